-- Node events take their ids at the commit, not when the transaction asks for them.
--
-- Event ids must become visible in increasing order: a node resumes "after id N", so an id
-- that committed after a higher one would never be read. An advisory lock, taken before any
-- id is drawn and released only once the commit is visible, gives that order. Until now the
-- transaction took it with its event insert, and so held it through the round trip to the
-- server and back with the COMMIT, which serialised every task creation across replicas on
-- the server's scheduling (and a replica stopped between the two held it for everyone).
--
-- Now a transaction only queues its events here, one row per call, without the lock. A
-- deferred constraint trigger runs when the transaction commits, inside the COMMIT: it takes
-- the lock, moves the row's events into `events` in the order given (drawing their ids),
-- NOTIFYs the schema's event channel and deletes the row. The lock is held only for that and
-- the commit record's flush, with no round trip in between. Rows never outlive their
-- transaction (deleted before it commits, gone with it when it rolls back), so the table is
-- unlogged: nothing here needs to survive a crash.
CREATE UNLOGGED TABLE event_batches (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind              TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    run_ids           BIGINT[] NOT NULL,
    collaboration_ids BIGINT[] NOT NULL,
    organization_ids  BIGINT[] NOT NULL,
    -- The payloads of the notifications naming the nodes (`nodes:<c>:<o>;...`, several for
    -- more nodes than one holds); empty, the last event id is sent (every replica reads).
    nodes             TEXT[] NOT NULL,
    CHECK (cardinality(run_ids) = cardinality(collaboration_ids)
           AND cardinality(run_ids) = cardinality(organization_ids))
);

CREATE FUNCTION warden_write_event_batch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_id BIGINT;
    channel TEXT;
    payload TEXT;
BEGIN
    -- The event-order lock (key 0x5741_5244_454e, "WARDEN"): released with the commit.
    PERFORM pg_advisory_xact_lock(95938064696654);
    WITH new AS (
        INSERT INTO events (collaboration_id, organization_id, kind, run_id, created_at)
        SELECT u.c, u.o, NEW.kind, u.r, NEW.created_at
        FROM unnest(NEW.run_ids, NEW.collaboration_ids, NEW.organization_ids)
             WITH ORDINALITY AS u(r, c, o, n)
        ORDER BY u.n
        RETURNING id)
    SELECT max(id) INTO last_id FROM new;
    -- The schema's event channel, as the server names it (`storage::event_channel!`).
    channel := 'warden_events_' || left(md5(current_schema()), 16);
    IF cardinality(NEW.nodes) = 0 THEN
        PERFORM pg_notify(channel, last_id::TEXT);
    END IF;
    FOREACH payload IN ARRAY NEW.nodes LOOP
        PERFORM pg_notify(channel, payload);
    END LOOP;
    DELETE FROM event_batches WHERE id = NEW.id;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER event_batches_at_commit
    AFTER INSERT ON event_batches
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION warden_write_event_batch();
