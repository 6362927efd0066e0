"""The local stack without Docker: Apache Kafka (KRaft), Apicurio Registry and PostgreSQL."""
