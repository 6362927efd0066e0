-- Apicurio Registry keeps its schemas in this database (persistent schema ids).
CREATE DATABASE apicurio OWNER scalp;
