"""A registry behind HTTP basic auth, as managed registries serve it (Confluent Cloud, Aiven): a separate
process that checks the Authorization header of every request (401 without the right one) and forwards the
request to the real registry. Test-only.

    python -m tests.servers.registry_gateway --upstream URL --user U --password P
prints ``READY <base url>`` once it listens; clients use ``<base url>/apis/ccompat/v7``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hmac

from aiohttp import ClientSession, web


def app(upstream: str, user: str, password: str) -> web.Application:
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    session: dict[str, ClientSession] = {}

    async def forward(request: web.Request) -> web.StreamResponse:
        if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
            return web.json_response(
                {"error_code": 401, "message": "Unauthorized"},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="registry"'},
            )
        client = session.setdefault("client", ClientSession())
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "authorization")}
        async with client.request(
            request.method, upstream + request.rel_url.path_qs, data=await request.read(), headers=headers
        ) as reply:
            body = await reply.read()
            return web.Response(body=body, status=reply.status, content_type=reply.content_type)

    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", forward)
    return application


async def serve(args: argparse.Namespace) -> None:
    runner = web.AppRunner(app(args.upstream.rstrip("/"), args.user, args.password), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="A basic-auth gateway in front of a schema registry")
    p.add_argument("--upstream", required=True, help="the registry's base URL (scheme, host, port)")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(p.parse_args(argv)))


if __name__ == "__main__":
    main()
