"""Benchmarks (`scalp bench <name>`); results go to BENCHMARKS.md."""


def verdict(what: str, value: float | None, target: float, unit: str, *, at_least: bool) -> str:
    """One line saying whether a recorded value meets its target."""
    if value is None:
        return f"{what}: not measured (target {'at least' if at_least else 'under'} {target:,.0f} {unit})"
    met = value >= target if at_least else value < target
    bound = "at least" if at_least else "under"
    return (
        f"{what}: {value:,.1f} {unit} against a target of {bound} {target:,.0f} {unit}: {'met' if met else 'NOT met'}"
    )
