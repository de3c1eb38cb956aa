namespace Shoal.Journal;

/// <summary>
/// Batches journal rows on a thread of its own: the run loop hands rows over without waiting; every
/// <see cref="FlushInterval"/> (or sooner when many are pending) they are written in one transaction. A row that
/// supersedes a pending one (started, then finished) replaces it, so a short task usually costs one row write.
/// A crash loses at most the rows of the last interval: attempts that were then in flight or just ended, which a
/// resume reruns.
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
            if (_pending.Count >= EagerBatch)
            {
                Monitor.PulseAll(_lock);
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
                if (!_stopping && _pending.Count < EagerBatch && _actions.Count == 0)
                {
                    Monitor.Wait(_lock, FlushInterval);
                }

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
