"""Topic and schema catalog, Avro serde and registry access."""
