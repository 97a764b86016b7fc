-- Durable content generation jobs. A worker claims a queued job by setting its lease; a job
-- whose lease ran out (its worker died) goes back to the queue.
CREATE TABLE generation_jobs (
    id                 TEXT PRIMARY KEY,
    organization_id    TEXT NOT NULL REFERENCES organizations (id),
    website_id         TEXT NOT NULL REFERENCES websites (id),
    requested_by_type  TEXT NOT NULL,
    requested_by_id    TEXT NOT NULL,
    topic              TEXT NOT NULL,
    keywords           TEXT NOT NULL,
    tone               TEXT,
    length             TEXT NOT NULL,
    status             TEXT NOT NULL,
    error              TEXT,
    blog_id            TEXT,
    attempts           INTEGER NOT NULL,
    claimed_by         TEXT,
    lease_until        INTEGER,
    created_at         INTEGER NOT NULL,
    started_at         INTEGER,
    finished_at        INTEGER
);
CREATE INDEX generation_jobs_status ON generation_jobs (status, created_at);
CREATE INDEX generation_jobs_org ON generation_jobs (organization_id, created_at);
