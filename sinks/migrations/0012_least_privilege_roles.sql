-- Least-privilege roles (group roles, no login), for the login roles that connect as each part of the
-- pipeline (the secured local stack creates scalp_sink, scalp_execute and scalp_analyst; elsewhere, grant
-- membership to your own login roles). The owner (who runs these migrations) keeps the DDL.
--   scalp_writer: the sink worker and label writes: read and write every table (no DDL)
--   scalp_router: scalp execute: its audit trail (insert), and reads
--   scalp_reader: research and status reports: read only
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['scalp_writer', 'scalp_router', 'scalp_reader'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA public TO scalp_writer, scalp_router, scalp_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO scalp_writer, scalp_router, scalp_reader;
GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO scalp_writer;
GRANT INSERT ON execution_audit TO scalp_router;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO scalp_writer, scalp_router;
-- tables and sequences later migrations create get the same rights
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO scalp_writer, scalp_router, scalp_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT INSERT, UPDATE, DELETE ON TABLES TO scalp_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO scalp_writer, scalp_router;

-- the login roles of the conventional names, where they exist
DO $$
DECLARE
    pair text[];
BEGIN
    FOREACH pair SLICE 1 IN ARRAY ARRAY[
        ARRAY['scalp_sink', 'scalp_writer'], ARRAY['scalp_execute', 'scalp_router'], ARRAY['scalp_analyst', 'scalp_reader']
    ] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = pair[1]) THEN
            EXECUTE format('GRANT %I TO %I', pair[2], pair[1]);
        END IF;
    END LOOP;
END
$$;
