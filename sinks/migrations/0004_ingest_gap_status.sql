-- ingest_gaps records windows that could not be repaired too (status 'unrepaired' with the error).
ALTER TABLE ingest_gaps ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'repaired';
ALTER TABLE ingest_gaps ADD COLUMN IF NOT EXISTS error text;
ALTER TABLE ingest_gaps DROP CONSTRAINT IF EXISTS ingest_gaps_status_check;
ALTER TABLE ingest_gaps ADD CONSTRAINT ingest_gaps_status_check CHECK (status IN ('repaired', 'unrepaired'));
