using System.Globalization;
using Microsoft.Data.Sqlite;
using Shoal.Execution;
using SQLitePCL;

namespace Shoal.Journal;

/// <summary>
/// The SQLite journal of a run directory (<c>journal.db</c>, WAL mode): what ran, how it ended, where its output is.
/// Only this folder touches SQLite. Writers batch rows through <see cref="JournalWriter"/>; readers (status, cat)
/// open it read-only and do not disturb the writer.
/// </summary>
public sealed class RunJournal : IDisposable
{
    public const string FileName = "journal.db";
    private readonly SqliteConnection _connection;
    private sqlite3_stmt? _upsert;

    static RunJournal()
    {
        // The AOT binary links SQLite statically (DirectPInvoke); under the JIT (tests, dotnet run) "sqlite3" must be
        // found as a shared library: take the runtime's libsqlite3.so.0, which needs no -dev package.
        System.Runtime.InteropServices.NativeLibrary.SetDllImportResolver(typeof(SQLitePCL.SQLite3Provider_sqlite3).Assembly, (name, assembly, path) =>
            name == "sqlite3" && System.Runtime.InteropServices.NativeLibrary.TryLoad("libsqlite3.so.0", out var handle) ? handle : IntPtr.Zero);
        SQLitePCL.raw.SetProvider(new SQLitePCL.SQLite3Provider_sqlite3());
    }

    /// <summary>Makes sure SQLite is set up (runs the static constructor) for code that opens a connection itself.</summary>
    public static void Initialize()
    {
    }

    private RunJournal(SqliteConnection connection, string path)
    {
        _connection = connection;
        Path = path;
    }

    /// <summary>The schema version of the file (a read-only open of an older journal is not migrated).</summary>
    private int _version = Migrations.Latest;

    public string Path { get; }

    /// <summary>Opens (creating when <paramref name="create"/>) and migrates the journal; throws <see cref="JournalException"/>
    /// for a corrupt file or one written by a newer Shoal. Never resets an existing journal.</summary>
    public static RunJournal Open(string path, bool create, bool readOnly = false)
    {
        if (!create && !File.Exists(path))
        {
            throw new JournalException($"no journal at {path}");
        }

        var builder = new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = readOnly ? SqliteOpenMode.ReadOnly : SqliteOpenMode.ReadWriteCreate,
            Pooling = false,
        };
        var connection = new SqliteConnection(builder.ToString());
        try
        {
            connection.Open();
            var journal = new RunJournal(connection, path);
            var version = Convert.ToInt32(journal.Scalar("PRAGMA user_version"), CultureInfo.InvariantCulture);
            if (version > Migrations.Latest)
            {
                throw new JournalException($"{path} was written by a newer Shoal (journal schema {version}; this Shoal reads up to {Migrations.Latest}). Use that Shoal, or start a new run with --run-dir.");
            }

            journal._version = version;
            if (!readOnly)
            {
                journal.Execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
                journal.Migrate(version);
                journal._version = Migrations.Latest;
            }
            else if (version == 0)
            {
                throw new JournalException($"{path} is empty: no run has been recorded there");
            }

            // A cheap read of every table catches a truncated or overwritten file before we trust it.
            journal.Scalar("SELECT count(*) FROM session");
            return journal;
        }
        catch (SqliteException e)
        {
            connection.Dispose();
            throw new JournalException($"{path} is not a usable Shoal journal ({e.Message.TrimEnd('.')}). It was left untouched; move it aside to start the run over, or restore it from a copy.", e);
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    private void Migrate(int from)
    {
        for (var v = from; v < Migrations.Latest; v++)
        {
            using var tx = _connection.BeginTransaction();
            Execute(Migrations.All[v]);
            Execute($"PRAGMA user_version = {v + 1}");
            tx.Commit();
        }
    }

    public string? GetMeta(string key)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "SELECT value FROM meta WHERE key = $k";
        cmd.Parameters.AddWithValue("$k", key);
        return cmd.ExecuteScalar() as string;
    }

    public void SetMeta(IReadOnlyDictionary<string, string> values)
    {
        using var tx = _connection.BeginTransaction();
        foreach (var (k, v) in values)
        {
            using var cmd = _connection.CreateCommand();
            cmd.CommandText = "INSERT OR REPLACE INTO meta(key, value) VALUES($k, $v)";
            cmd.Parameters.AddWithValue("$k", k);
            cmd.Parameters.AddWithValue("$v", v);
            cmd.ExecuteNonQuery();
        }

        tx.Commit();
    }

    public int BeginSession(long startedUnixMs, string host, int pid, string args)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "INSERT INTO session(started, host, pid, args) VALUES($s, $h, $p, $a); SELECT last_insert_rowid();";
        cmd.Parameters.AddWithValue("$s", startedUnixMs);
        cmd.Parameters.AddWithValue("$h", host);
        cmd.Parameters.AddWithValue("$p", pid);
        cmd.Parameters.AddWithValue("$a", args);
        return Convert.ToInt32(cmd.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    public void EndSession(int session, long endedUnixMs, string outcome)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "UPDATE session SET ended = $e, outcome = $o WHERE id = $id";
        cmd.Parameters.AddWithValue("$e", endedUnixMs);
        cmd.Parameters.AddWithValue("$o", outcome);
        cmd.Parameters.AddWithValue("$id", session);
        cmd.ExecuteNonQuery();
    }

    /// <summary>The SLURM job a session runs in.</summary>
    public void SetSessionJob(int session, string job)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "UPDATE session SET job = $j WHERE id = $id";
        cmd.Parameters.AddWithValue("$j", job);
        cmd.Parameters.AddWithValue("$id", session);
        cmd.ExecuteNonQuery();
    }

    public sealed record ChainRow(string By, string? Job, long Submitted, string? Error);

    /// <summary>Claims the one submission <paramref name="by"/> may make (a job submits its continuation once):
    /// false when it was claimed before.</summary>
    public bool ClaimSubmission(string by, long nowMs)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "INSERT OR IGNORE INTO chain(by, submitted) VALUES($b, $t)";
        cmd.Parameters.AddWithValue("$b", by);
        cmd.Parameters.AddWithValue("$t", nowMs);
        return cmd.ExecuteNonQuery() == 1;
    }

    /// <summary>What a claimed submission gave: the new job's id, or why there is none.</summary>
    public void RecordSubmission(string by, string? job, string? error)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "UPDATE chain SET job = $j, error = $e WHERE by = $b";
        cmd.Parameters.AddWithValue("$b", by);
        cmd.Parameters.AddWithValue("$j", (object?)job ?? DBNull.Value);
        cmd.Parameters.AddWithValue("$e", (object?)error ?? DBNull.Value);
        cmd.ExecuteNonQuery();
    }

    /// <summary>Every submission, oldest first (none in journals older than schema 3).</summary>
    public List<ChainRow> Chain() =>
        Rows(3, "SELECT by, job, submitted, error FROM chain ORDER BY submitted, by", r => new ChainRow(r.GetString(0), r.IsDBNull(1) ? null : r.GetString(1), r.GetInt64(2), r.IsDBNull(3) ? null : r.GetString(3)));

    public sealed record ReleaseRow(int Session, int Worker, string Host, long At, string? Error);

    /// <summary>A node handed back to SLURM (or the attempt to, with the error).</summary>
    public void AddRelease(int session, int worker, string host, long atUnixMs, string? error)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "INSERT OR REPLACE INTO node_release(session, worker, host, at, error) VALUES($s, $w, $h, $t, $e)";
        cmd.Parameters.AddWithValue("$s", session);
        cmd.Parameters.AddWithValue("$w", worker);
        cmd.Parameters.AddWithValue("$h", host);
        cmd.Parameters.AddWithValue("$t", atUnixMs);
        cmd.Parameters.AddWithValue("$e", (object?)error ?? DBNull.Value);
        cmd.ExecuteNonQuery();
    }

    /// <summary>Every node release, oldest first (none in journals older than schema 3).</summary>
    public List<ReleaseRow> Releases() =>
        Rows(3, "SELECT session, worker, host, at, error FROM node_release ORDER BY at", r => new ReleaseRow(r.GetInt32(0), r.GetInt32(1), r.GetString(2), r.GetInt64(3), r.IsDBNull(4) ? null : r.GetString(4)));

    /// <summary>A node's setup or teardown ran (or could not): see <see cref="NodeStepResult"/>.</summary>
    public void AddNodeStep(int session, int worker, string host, NodeStepResult step)
    {
        ArgumentNullException.ThrowIfNull(step);
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "INSERT OR REPLACE INTO node_step(session, worker, step, host, started, duration, status, timed_out, log, tail, error) VALUES($s, $w, $k, $h, $t, $d, $x, $o, $l, $a, $e)";
        cmd.Parameters.AddWithValue("$s", session);
        cmd.Parameters.AddWithValue("$w", worker);
        cmd.Parameters.AddWithValue("$k", (int)step.Step);
        cmd.Parameters.AddWithValue("$h", host);
        cmd.Parameters.AddWithValue("$t", step.StartUnixMs);
        cmd.Parameters.AddWithValue("$d", step.DurationMs);
        cmd.Parameters.AddWithValue("$x", step.Status);
        cmd.Parameters.AddWithValue("$o", step.TimedOut ? 1 : 0);
        cmd.Parameters.AddWithValue("$l", step.Log);
        cmd.Parameters.AddWithValue("$a", step.Tail);
        cmd.Parameters.AddWithValue("$e", (object?)step.Error ?? DBNull.Value);
        cmd.ExecuteNonQuery();
    }

    public sealed record NodeStepRow(int Session, int Worker, string Host, NodeStepResult Result);

    /// <summary>Every node step, by session, worker and step (none in journals older than schema 4).</summary>
    public List<NodeStepRow> NodeSteps() =>
        Rows(4, "SELECT session, worker, step, host, started, duration, status, timed_out, log, tail, error FROM node_step ORDER BY session, worker, step", r => new NodeStepRow(
            r.GetInt32(0),
            r.GetInt32(1),
            r.GetString(3),
            new NodeStepResult((NodeStep)r.GetInt32(2), r.GetInt64(4), r.GetInt64(5), r.GetInt32(6), r.GetInt32(7) != 0, r.GetString(8), r.GetString(9), r.IsDBNull(10) ? null : r.GetString(10))));

    /// <summary>The run passed the <c>#SHOAL barrier</c> on <paramref name="line"/> (<paramref name="failed"/> tasks above it had failed).</summary>
    public void AddBarrier(int session, int line, long atUnixMs, int failed, bool stopped)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "INSERT OR REPLACE INTO barrier(session, line, at, failed, stopped) VALUES($s, $l, $t, $f, $x)";
        cmd.Parameters.AddWithValue("$x", stopped ? 1 : 0);
        cmd.Parameters.AddWithValue("$s", session);
        cmd.Parameters.AddWithValue("$l", line);
        cmd.Parameters.AddWithValue("$t", atUnixMs);
        cmd.Parameters.AddWithValue("$f", failed);
        cmd.ExecuteNonQuery();
    }

    /// <summary>Every barrier passed (or stopped at), oldest first (none in journals older than schema 4).</summary>
    public List<(int Session, int Line, long At, int Failed, bool Stopped)> Barriers() =>
        Rows(4, "SELECT session, line, at, failed, stopped FROM barrier ORDER BY at", r => (r.GetInt32(0), r.GetInt32(1), r.GetInt64(2), r.GetInt32(3), r.GetInt32(4) != 0));

    /// <summary>The rows of <paramref name="sql"/>, each made by <paramref name="row"/>; none in a journal older than
    /// schema <paramref name="since"/> (its table does not exist there).</summary>
    private List<T> Rows<T>(int since, string sql, Func<SqliteDataReader, T> row)
    {
        var list = new List<T>();
        if (_version < since)
        {
            return list;
        }

        using var cmd = _connection.CreateCommand();
        cmd.CommandText = sql;
        using var r = cmd.ExecuteReader();
        while (r.Read())
        {
            list.Add(row(r));
        }

        return list;
    }

    /// <summary>The SLURM job of each session that ran in one (none in journals older than schema 3).</summary>
    public Dictionary<int, string> SessionJobs()
    {
        var jobs = new Dictionary<int, string>();
        if (_version < 3)
        {
            return jobs;
        }

        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "SELECT id, job FROM session WHERE job IS NOT NULL";
        using var r = cmd.ExecuteReader();
        while (r.Read())
        {
            jobs[r.GetInt32(0)] = r.GetString(1);
        }

        return jobs;
    }

    public void AddWorker(int session, int id, string host, int slots, string gpus, string logPrefix)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "INSERT OR REPLACE INTO worker(session, id, host, slots, gpus, log_prefix) VALUES($s, $i, $h, $n, $g, $p)";
        cmd.Parameters.AddWithValue("$s", session);
        cmd.Parameters.AddWithValue("$i", id);
        cmd.Parameters.AddWithValue("$h", host);
        cmd.Parameters.AddWithValue("$n", slots);
        cmd.Parameters.AddWithValue("$g", gpus);
        cmd.Parameters.AddWithValue("$p", logPrefix);
        cmd.ExecuteNonQuery();
    }

    public (string Host, string LogPrefix)? Worker(int session, int id)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "SELECT host, log_prefix FROM worker WHERE session = $s AND id = $i";
        cmd.Parameters.AddWithValue("$s", session);
        cmd.Parameters.AddWithValue("$i", id);
        using var r = cmd.ExecuteReader();
        return r.Read() ? (r.GetString(0), r.GetString(1)) : null;
    }

    public sealed record SessionRow(int Id, long Started, long? Ended, string Host, int Pid, string Args, string? Outcome);

    public sealed record WorkerRow(int Session, int Id, string Host, int Slots, string Gpus, string LogPrefix);

    public List<SessionRow> Sessions()
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "SELECT id, started, ended, host, pid, args, outcome FROM session ORDER BY id";
        using var r = cmd.ExecuteReader();
        var list = new List<SessionRow>();
        while (r.Read())
        {
            list.Add(new SessionRow(r.GetInt32(0), r.GetInt64(1), r.IsDBNull(2) ? null : r.GetInt64(2), r.GetString(3), r.GetInt32(4), r.GetString(5), r.IsDBNull(6) ? null : r.GetString(6)));
        }

        return list;
    }

    public List<WorkerRow> Workers()
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "SELECT session, id, host, slots, gpus, log_prefix FROM worker ORDER BY session, id";
        using var r = cmd.ExecuteReader();
        var list = new List<WorkerRow>();
        while (r.Read())
        {
            list.Add(new WorkerRow(r.GetInt32(0), r.GetInt32(1), r.GetString(2), r.GetInt32(3), r.GetString(4), r.GetString(5)));
        }

        return list;
    }

    /// <summary>Every attempt, in (task, attempt) order.</summary>
    public List<AttemptRecord> AllAttempts() => Query("ORDER BY task, attempt");

    /// <summary>Every attempt in (task, attempt) order, read one row at a time (for a report on millions of
    /// attempts: nothing is held). Stepped through SQLitePCL directly: 3× faster than a data reader per row.</summary>
    public IEnumerable<AttemptRecord> EachAttempt()
    {
        var db = _connection.Handle!;
        Check(raw.sqlite3_prepare_v2(db, $"SELECT {AttemptColumns} FROM attempt ORDER BY task, attempt", out var st), db);
        try
        {
            int rc;
            while ((rc = raw.sqlite3_step(st)) == raw.SQLITE_ROW)
            {
                yield return new AttemptRecord(
                    raw.sqlite3_column_int(st, 0), raw.sqlite3_column_int(st, 1), (AttemptState)raw.sqlite3_column_int(st, 2), raw.sqlite3_column_int(st, 3),
                    raw.sqlite3_column_int64(st, 4), raw.sqlite3_column_int64(st, 5), raw.sqlite3_column_int(st, 6), raw.sqlite3_column_int(st, 7),
                    raw.sqlite3_column_int(st, 8), raw.sqlite3_column_int64(st, 9), raw.sqlite3_column_int64(st, 10), raw.sqlite3_column_int64(st, 11),
                    raw.sqlite3_column_int64(st, 12), raw.sqlite3_column_int(st, 13));
            }

            if (rc != raw.SQLITE_DONE)
            {
                Check(rc, db);
            }
        }
        finally
        {
            st.Dispose();
        }
    }

    /// <summary>What a report needs to know before its one pass: how many attempts, their first start and last end
    /// (a running one ends now), the shortest and longest finished one.</summary>
    public Reporting.ReportModel.Extent ReportExtent(long nowMs)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = """
            SELECT count(*), min(started), max(CASE WHEN state = 0 THEN max(started, $now) ELSE started + duration END),
                   min(CASE WHEN state IN (1, 2, 3) THEN duration END), max(CASE WHEN state IN (1, 2, 3) THEN duration END),
                   count(CASE WHEN state IN (1, 2, 3) THEN 1 END)
            FROM attempt
            """;
        cmd.Parameters.AddWithValue("$now", nowMs);
        using var r = cmd.ExecuteReader();
        r.Read();
        var count = r.GetInt64(0);
        return count == 0
            ? new Reporting.ReportModel.Extent(0, nowMs, nowMs, 0, 0, 0)
            : new Reporting.ReportModel.Extent(count, r.GetInt64(1), r.GetInt64(2), r.IsDBNull(3) ? 0 : r.GetInt64(3), r.IsDBNull(4) ? 0 : r.GetInt64(4), r.GetInt64(5));
    }

    /// <summary>Counts of the latest attempt's state per task, and how many tasks have any attempt.</summary>
    public (Dictionary<AttemptState, int> ByState, int Tasks) LatestStateCounts()
    {
        using var cmd = _connection.CreateCommand();
        // One pass in primary-key order: with max(), SQLite takes a bare column (state) from the row holding the max
        // (twice as fast as joining the latest attempts back: 0.23 s instead of 0.49 s for 1,000,000 tasks).
        cmd.CommandText = "SELECT s, count(*) FROM (SELECT state AS s, max(attempt) FROM attempt GROUP BY task) GROUP BY s";
        using var r = cmd.ExecuteReader();
        var counts = new Dictionary<AttemptState, int>();
        var tasks = 0;
        while (r.Read())
        {
            counts[(AttemptState)r.GetInt32(0)] = r.GetInt32(1);
            tasks += r.GetInt32(1);
        }

        return (counts, tasks);
    }

    /// <summary>Attempts that ended at or after <paramref name="sinceUnixMs"/> (finished or failed).</summary>
    public int FinishedSince(long sinceUnixMs)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "SELECT count(*) FROM attempt WHERE state IN (1, 2, 3) AND started + duration >= $s";
        cmd.Parameters.AddWithValue("$s", sinceUnixMs);
        return Convert.ToInt32(cmd.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    /// <summary>Per worker of a session: busy milliseconds up to <paramref name="nowMs"/> (running attempts count until
    /// then when <paramref name="countRunning"/>), and how many attempts are running.</summary>
    public List<(int Worker, long BusyMs, int Running)> WorkerBusy(int session, long nowMs, bool countRunning)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "SELECT worker, sum(CASE WHEN state <> 0 THEN duration WHEN $r THEN max(0, $now - started) ELSE 0 END), sum(state = 0) FROM attempt WHERE session = $s GROUP BY worker";
        cmd.Parameters.AddWithValue("$s", session);
        cmd.Parameters.AddWithValue("$now", nowMs);
        cmd.Parameters.AddWithValue("$r", countRunning ? 1 : 0);
        using var r = cmd.ExecuteReader();
        var list = new List<(int, long, int)>();
        while (r.Read())
        {
            list.Add((r.GetInt32(0), r.IsDBNull(1) ? 0 : r.GetInt64(1), r.GetInt32(2)));
        }

        return list;
    }

    /// <summary>The running attempts that started first.</summary>
    public List<AttemptRecord> LongestRunning(int limit) => Query($"WHERE state = 0 ORDER BY started LIMIT {limit}");

    /// <summary>Attempts a killed run left as running become interrupted; returns how many.</summary>
    public int MarkRunningInterrupted() =>
        Execute($"UPDATE attempt SET state = {(int)AttemptState.Interrupted} WHERE state = {(int)AttemptState.Running}");

    /// <summary>Calls <paramref name="visit"/> with the latest attempt of every task that has one: task id, attempt,
    /// state, duration in ms.</summary>
    public void ReadLatest(Action<int, int, AttemptState, long> visit)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "SELECT task, max(attempt), state, duration FROM attempt GROUP BY task";
        using var r = cmd.ExecuteReader();
        while (r.Read())
        {
            visit(r.GetInt32(0), r.GetInt32(1), (AttemptState)r.GetInt32(2), r.GetInt64(3));
        }
    }

    /// <summary>Every attempt of one task, oldest first.</summary>
    public List<AttemptRecord> Attempts(int taskId) => Query("WHERE task = $t ORDER BY attempt", ("$t", taskId));

    /// <summary>The latest attempt of every task, in id order, optionally only those in <paramref name="states"/>.</summary>
    public List<AttemptRecord> LatestAttempts(IReadOnlyCollection<AttemptState>? states = null)
    {
        var filter = states is { Count: > 0 } ? $" AND a.state IN ({string.Join(',', states.Select(s => (int)s))})" : "";
        return Query($"AS a WHERE a.attempt = (SELECT max(attempt) FROM attempt WHERE task = a.task){filter} ORDER BY a.task");
    }

    /// <summary>The columns of an <see cref="AttemptRecord"/>, in its order (log: 0 before schema 2).</summary>
    private string AttemptColumns => $"task, attempt, state, status, started, duration, session, worker, lane, out_off, out_len, err_off, err_len, {(_version >= 2 ? "log" : "0")}";

    private List<AttemptRecord> Query(string where, params (string Name, object Value)[] parameters)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = $"SELECT {AttemptColumns} FROM attempt {where}";
        foreach (var (name, value) in parameters)
        {
            cmd.Parameters.AddWithValue(name, value);
        }

        var list = new List<AttemptRecord>();
        using var r = cmd.ExecuteReader();
        while (r.Read())
        {
            list.Add(new AttemptRecord(
                r.GetInt32(0), r.GetInt32(1), (AttemptState)r.GetInt32(2), r.GetInt32(3), r.GetInt64(4), r.GetInt64(5),
                r.GetInt32(6), r.GetInt32(7), r.GetInt32(8), r.GetInt64(9), r.GetInt64(10), r.GetInt64(11), r.GetInt64(12), r.GetInt32(13)));
        }

        return list;
    }

    /// <summary>Writes a batch of rows in one transaction; a later row for the same (task, attempt) replaces the earlier.
    /// Binds through SQLitePCL directly: Microsoft.Data.Sqlite would box 13 parameters and build a reader per row.</summary>
    public void Write(IReadOnlyList<AttemptRecord> rows)
    {
        using var tx = _connection.BeginTransaction();
        var db = _connection.Handle!;
        if (_upsert is null)
        {
            Check(raw.sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO attempt(task, attempt, state, status, started, duration, session, worker, lane, out_off, out_len, err_off, err_len, log) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)", out var statement), db);
            _upsert = statement;
        }

        var st = _upsert;
        foreach (var row in rows)
        {
            raw.sqlite3_bind_int64(st, 1, row.TaskId);
            raw.sqlite3_bind_int64(st, 2, row.Attempt);
            raw.sqlite3_bind_int64(st, 3, (int)row.State);
            raw.sqlite3_bind_int64(st, 4, row.Status);
            raw.sqlite3_bind_int64(st, 5, row.StartUnixMs);
            raw.sqlite3_bind_int64(st, 6, row.DurationMs);
            raw.sqlite3_bind_int64(st, 7, row.Session);
            raw.sqlite3_bind_int64(st, 8, row.Worker);
            raw.sqlite3_bind_int64(st, 9, row.Lane);
            raw.sqlite3_bind_int64(st, 10, row.OutOffset);
            raw.sqlite3_bind_int64(st, 11, row.OutLength);
            raw.sqlite3_bind_int64(st, 12, row.ErrOffset);
            raw.sqlite3_bind_int64(st, 13, row.ErrLength);
            raw.sqlite3_bind_int64(st, 14, row.Log);
            var rc = raw.sqlite3_step(st);
            raw.sqlite3_reset(st);
            if (rc != raw.SQLITE_DONE)
            {
                Check(rc, db);
            }
        }

        tx.Commit();
    }

    private static void Check(int rc, sqlite3 db)
    {
        if (rc is not (raw.SQLITE_OK or raw.SQLITE_DONE or raw.SQLITE_ROW))
        {
            throw new SqliteException(raw.sqlite3_errmsg(db).utf8_to_string(), rc);
        }
    }

    private object? Scalar(string sql)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = sql;
        return cmd.ExecuteScalar();
    }

    private int Execute(string sql)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = sql;
        return cmd.ExecuteNonQuery();
    }

    public void Dispose()
    {
        _upsert?.Dispose();
        _connection.Dispose();
    }
}
