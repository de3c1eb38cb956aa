namespace Shoal.Journal;

/// <summary>
/// The journal's schema, as numbered migrations. <c>PRAGMA user_version</c> holds the number of the last one applied;
/// each runs once, in a transaction, in order. Append new ones; never edit a released one.
/// </summary>
internal static class Migrations
{
    public static readonly string[] All =
    [
        // 1: the initial schema.
        """
        CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE session(
            id INTEGER PRIMARY KEY,
            started INTEGER NOT NULL,
            ended INTEGER,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            args TEXT NOT NULL,
            outcome TEXT);
        CREATE TABLE worker(
            session INTEGER NOT NULL,
            id INTEGER NOT NULL,
            host TEXT NOT NULL,
            slots INTEGER NOT NULL,
            gpus TEXT NOT NULL,
            log_prefix TEXT NOT NULL,
            PRIMARY KEY(session, id)) WITHOUT ROWID;
        CREATE TABLE attempt(
            task INTEGER NOT NULL,
            attempt INTEGER NOT NULL,
            state INTEGER NOT NULL,
            status INTEGER NOT NULL,
            started INTEGER NOT NULL,
            duration INTEGER NOT NULL,
            session INTEGER NOT NULL,
            worker INTEGER NOT NULL,
            lane INTEGER NOT NULL,
            out_off INTEGER NOT NULL,
            out_len INTEGER NOT NULL,
            err_off INTEGER NOT NULL,
            err_len INTEGER NOT NULL,
            PRIMARY KEY(task, attempt)) WITHOUT ROWID;
        """,

        // 2: the lane log generation of an attempt (a lane moves to fresh log files when a task's leftover process
        // still holds the old ones). 0 for every attempt before; costs nothing in a row while it is 0.
        """
        ALTER TABLE attempt ADD COLUMN log INTEGER NOT NULL DEFAULT 0;
        """,

        // 3: the allocation's life. session.job: the SLURM job a session ran in. chain: the jobs a run submitted
        // (by: the job that submitted it, or 'submit:<ms>' for shoal submit; unique, so a job submits at most once).
        // node_release: nodes handed back to SLURM before the job's end.
        """
        ALTER TABLE session ADD COLUMN job TEXT;
        CREATE TABLE chain(
            by TEXT PRIMARY KEY,
            job TEXT,
            submitted INTEGER NOT NULL,
            error TEXT) WITHOUT ROWID;
        CREATE TABLE node_release(
            session INTEGER NOT NULL,
            worker INTEGER NOT NULL,
            host TEXT NOT NULL,
            at INTEGER NOT NULL,
            error TEXT,
            PRIMARY KEY(session, worker)) WITHOUT ROWID;
        """,

        // 4: per-node setup and teardown (node_step: one row per step a worker ran; step 0 setup, 1 teardown; status
        // as for attempts: exit code, or -signal; timed_out 1 when it ran past its timeout; error: it could not run at
        // all, or was stopped) and barriers (when the run passed each #SHOAL barrier line, and how many tasks above it
        // had failed; stopped 1: the run stopped there, stop-on-failure).
        """
        CREATE TABLE node_step(
            session INTEGER NOT NULL,
            worker INTEGER NOT NULL,
            step INTEGER NOT NULL,
            host TEXT NOT NULL,
            started INTEGER NOT NULL,
            duration INTEGER NOT NULL,
            status INTEGER NOT NULL,
            timed_out INTEGER NOT NULL,
            log TEXT NOT NULL,
            tail TEXT NOT NULL,
            error TEXT,
            PRIMARY KEY(session, worker, step)) WITHOUT ROWID;
        CREATE TABLE barrier(
            session INTEGER NOT NULL,
            line INTEGER NOT NULL,
            at INTEGER NOT NULL,
            failed INTEGER NOT NULL,
            stopped INTEGER NOT NULL,
            PRIMARY KEY(session, line)) WITHOUT ROWID;
        """,
    ];

    public static int Latest => All.Length;
}
