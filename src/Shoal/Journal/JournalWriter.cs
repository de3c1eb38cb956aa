namespace Shoal.Journal;

/// <summary>
/// Writes journal rows on a thread of its own, by group commit: the run loop hands rows over without waiting; as soon
/// as an ended attempt waits, everything pending is written in one transaction, and whatever arrives during that
/// commit goes in the next. So a kill -9 loses at most the ends that arrived during the last commit (well under a
/// millisecond at ordinary rates), not a timer's worth. Rows of attempts that only started wait up to
/// <see cref="FlushInterval"/> to ride along (a crash loses nothing by not knowing a task had started); a row that
/// supersedes a pending one (started, then finished) replaces it, so a short task often costs one row write.
/// </summary>
public sealed class JournalWriter : IDisposable
{
    public static readonly TimeSpan FlushInterval = TimeSpan.FromMilliseconds(50);
    private const int EagerBatch = 8192;

    private readonly RunJournal _journal;
    private readonly object _lock = new();
    private readonly Thread _thread;
    private Dictionary<(int, int), AttemptRecord> _pending = [];
    private Dictionary<(int, int), AttemptRecord> _spare = [];
    private readonly List<AttemptRecord> _batch = [];
    private List<Action<RunJournal>> _actions = [];
    private bool _stopping;
    private bool _urgent;
    private Exception? _failure;
    private long _written;

    public JournalWriter(RunJournal journal)
    {
        _journal = journal;
        _thread = new Thread(Loop) { IsBackground = true, Name = "shoal-journal" };
        _thread.Start();
    }

    /// <summary>Rows written so far.</summary>
    public long Written => Interlocked.Read(ref _written);

    /// <summary>The error that stopped the writer (disk full, read-only filesystem), if any.</summary>
    public Exception? Failure => Volatile.Read(ref _failure);

    /// <summary>Runs <paramref name="action"/> on the writer's thread before the next batch (the connection is not thread-safe).</summary>
    public void Enqueue(Action<RunJournal> action)
    {
        lock (_lock)
        {
            _actions.Add(action);
            Monitor.PulseAll(_lock);
        }
    }

    public void Record(in AttemptRecord row)
    {
        lock (_lock)
        {
            _pending[(row.TaskId, row.Attempt)] = row;
            if (row.State != AttemptState.Running || _pending.Count >= EagerBatch)
            {
                if (!_urgent)
                {
                    _urgent = true;
                    Monitor.PulseAll(_lock);
                }
            }
        }
    }

    private void Loop()
    {
        while (true)
        {
            Dictionary<(int, int), AttemptRecord> work;
            List<Action<RunJournal>> actions;
            bool stop;
            lock (_lock)
            {
                if (!_stopping && !_urgent && _actions.Count == 0)
                {
                    Monitor.Wait(_lock, FlushInterval);
                }

                _urgent = false;

                stop = _stopping;
                work = _pending;
                _pending = _spare;
                _spare = work;
                actions = _actions;
                _actions = [];
            }

            foreach (var action in actions)
            {
                try
                {
                    action(_journal);
                }
                catch (Exception e) when (e is Microsoft.Data.Sqlite.SqliteException or IOException)
                {
                    Volatile.Write(ref _failure, e);
                }
            }

            if (work.Count > 0 && _failure is null)
            {
                _batch.Clear();
                _batch.AddRange(work.Values);
                try
                {
                    _journal.Write(_batch);
                    Interlocked.Add(ref _written, _batch.Count);
                }
                catch (Exception e) when (e is Microsoft.Data.Sqlite.SqliteException or IOException)
                {
                    Volatile.Write(ref _failure, e);
                }
            }

            work.Clear();
            if (stop)
            {
                lock (_lock)
                {
                    if (_pending.Count == 0)
                    {
                        return;
                    }
                }
            }
        }
    }

    /// <summary>Writes everything pending and stops the thread; throws if a write failed.</summary>
    public void Complete()
    {
        lock (_lock)
        {
            _stopping = true;
            Monitor.PulseAll(_lock);
        }

        _thread.Join();
        if (_failure is { } f)
        {
            throw new JournalException($"writing the journal {_journal.Path} failed: {f.Message.TrimEnd('.')}. The run stopped; everything recorded before is intact. Free space (or make the folder writable) and run the same command to resume.", f);
        }
    }

    public void Dispose()
    {
        if (_thread.IsAlive)
        {
            lock (_lock)
            {
                _stopping = true;
                Monitor.PulseAll(_lock);
            }

            _thread.Join();
        }
    }
}
