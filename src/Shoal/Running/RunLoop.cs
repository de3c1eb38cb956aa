using System.Threading.Channels;
using Shoal.Execution;
using Shoal.Journal;
using Shoal.Tasks;

namespace Shoal.Running;

/// <summary>
/// The pump around <see cref="RunState"/>: process exits, worker joins and losses, stop requests and a 100 ms tick
/// arrive from any thread on one single-reader channel; one loop hands them to the state, which decides, and carries
/// out its effects (launchers start and signal attempts, the journal writer records rows). One thread at a time holds
/// the state's turn: the pump, or the local reaper handling an exit inline while the pump is idle.
/// </summary>
public sealed class RunLoop : IRunEffects
{
    private readonly RunState _state;
    private readonly JournalWriter _journal;
    private readonly TimeProvider _time;
    private readonly int _session;
    private readonly Lock _joinGate = new();

    // Whoever holds _turn runs the state: the pump below, or a reaper handling an exit inline (InlineExitSink).
    private readonly Lock _turn = new();
    private bool _pumping;
    private bool _over;
    private readonly Channel<LoopEvent> _events = Channel.CreateUnbounded<LoopEvent>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Dictionary<int, ITaskLauncher> _launchers = [];

    /// <summary>Reads the journal (to skip what finished before); workers join through <see cref="AddWorker"/>.</summary>
    public RunLoop(TaskList tasks, RunOptions options, RunJournal journal, JournalWriter writer, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(journal);
        _journal = writer;
        _time = time;
        _session = options.Session;
        _state = new RunState(tasks, options, this, time);
        journal.MarkRunningInterrupted();
        journal.ReadLatest(_state.Recall);
        _state.Begin();
        ExitSink = exit => _events.Writer.TryWrite(LoopEvent.Exited(exit));
        InlineExitSink = ExitedHere;
    }

    /// <summary>Where launchers report ended attempts (any thread).</summary>
    public Action<TaskExit> ExitSink { get; }

    /// <summary>Like <see cref="ExitSink"/>, but when the loop is idle the reporting thread takes the loop's turn and
    /// handles the exit itself (and starts what fits), instead of waking the loop's thread to do it: one thread
    /// hop less between a task's end and the next start. Only on the local reaper's thread (which holds no lock
    /// then); reports from other threads go through the channel as with <see cref="ExitSink"/>.</summary>
    public Action<TaskExit> InlineExitSink { get; }

    public RunProgress Progress => _state.Progress;

    /// <summary>Why the journal stopped accepting rows, when it did (the run then stopped).</summary>
    public string? JournalError => _state.JournalError;

    /// <summary>True when the run ended because every worker was lost with tasks still queued.</summary>
    public bool RanOutOfWorkers => _state.RanOutOfWorkers;

    /// <summary>A worker joins (any thread): its slots and GPUs become schedulable, started tasks go to its launcher.</summary>
    public void AddWorker(WorkerInfo worker, ITaskLauncher launcher)
    {
        ArgumentNullException.ThrowIfNull(launcher);
        lock (_joinGate)
        {
            if (!_over)
            {
                _events.Writer.TryWrite(LoopEvent.Joined(worker, launcher));
                return;
            }
        }

        launcher.Dispose(); // the run is over: the worker is told to finish at once (it tears down and leaves)
    }

    /// <summary>A worker is gone (any thread): its running tasks are recorded as interrupted and queued again.</summary>
    public void LoseWorker(int workerId) => _events.Writer.TryWrite(LoopEvent.Lost(workerId));

    /// <summary>No worker will join any more (any thread): once none is left, the run ends even with tasks queued.</summary>
    public void ExpectNoMoreWorkers() => _events.Writer.TryWrite(LoopEvent.NoMoreWorkers);

    /// <summary>When the allocation ends (any thread; null: unknown). Tasks expected to end later than
    /// <see cref="RunOptions.EndMargin"/> before it are not started.</summary>
    public void SetEnd(DateTimeOffset? end) => _events.Writer.TryWrite(LoopEvent.EndTime(end));

    /// <summary>Asks the run to stop (SIGINT/SIGTERM): no new starts, running tasks get TERM, then KILL after the grace.</summary>
    public void RequestStop(int signal) => _events.Writer.TryWrite(LoopEvent.Stop(signal));

    public async Task<RunOutcome> RunAsync(CancellationToken cancellationToken = default)
    {
        var started = _time.GetTimestamp();
        using var ticker = _time.CreateTimer(_ => _events.Writer.TryWrite(LoopEvent.Tick), null, TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(100));
        try
        {
            var reader = _events.Reader;
            while (reader.TryRead(out var early))
            {
                Handle(early); // what was said before the run began (workers, the allocation's end) counts from the start
            }

            lock (_turn)
            {
                _state.Settle();
                _pumping = !_state.Finished;
            }

            while (_pumping)
            {
                await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false);
                lock (_turn)
                {
                    while (reader.TryRead(out var e))
                    {
                        Handle(e);
                    }

                    _state.Settle();
                    _pumping = !_state.Finished;
                }
            }
        }
        finally
        {
            lock (_turn)
            {
                _pumping = false;
            }

            lock (_joinGate)
            {
                _over = true; // later joins are sent away by AddWorker itself
            }

            while (_events.Reader.TryRead(out var late))
            {
                if (late.Kind == LoopEventKind.Joined)
                {
                    _launchers[late.Worker!.Id] = late.Launcher!; // joined as the run ended: told to finish below
                }
            }

            foreach (var launcher in _launchers.Values)
            {
                launcher.Dispose();
            }

            _launchers.Clear();
        }

        return _state.Outcome(_time.GetElapsedTime(started));
    }

    private void ExitedHere(TaskExit exit)
    {
        // Only the reaper: a spawner reports refused starts on its own thread, and handling one here could end in
        // disposing its own launcher (a lost worker), which joins that very thread.
        if (!ChildProcesses.OnReaperThread || !_turn.TryEnter())
        {
            _events.Writer.TryWrite(LoopEvent.Exited(exit)); // the loop is busy, or not ours to run here: it takes this next
            return;
        }

        try
        {
            if (!_pumping)
            {
                _events.Writer.TryWrite(LoopEvent.Exited(exit));
                return;
            }

            _state.Exited(exit);
            _state.Settle();
            if (_state.Finished)
            {
                _events.Writer.TryWrite(LoopEvent.Tick); // wakes the pump to end the run
            }
        }
        finally
        {
            _turn.Exit();
        }
    }

    private void Handle(LoopEvent e)
    {
        switch (e.Kind)
        {
            case LoopEventKind.Exited:
                _state.Exited(e.Exit);
                break;
            case LoopEventKind.Tick:
                if (_journal.Failure is { } failure)
                {
                    _state.JournalFailed(failure.Message);
                }

                _state.Tick();
                break;
            case LoopEventKind.Stop:
                _state.Stop(e.Signal);
                break;
            case LoopEventKind.Joined:
                _launchers[e.Worker!.Id] = e.Launcher!;
                _state.Join(e.Worker);
                break;
            case LoopEventKind.Lost:
                _state.LoseWorker(e.Signal);
                break;
            case LoopEventKind.NoMoreWorkers:
                _state.NoMoreWorkers();
                break;
            case LoopEventKind.EndTime:
                _state.SetEnd(e.End);
                break;
        }
    }

    void IRunEffects.Launch(int worker, LaunchRequest request) => _launchers[worker].Launch(request);

    void IRunEffects.Signal(int worker, int task, int signal)
    {
        if (_launchers.TryGetValue(worker, out var launcher))
        {
            launcher.Signal(task, signal);
        }
    }

    void IRunEffects.Record(AttemptRecord record) => _journal.Record(record);

    void IRunEffects.PassedBarrier(int line, int failed, bool stopped)
    {
        var at = _time.GetUtcNow().ToUnixTimeMilliseconds();
        _journal.Enqueue(j => j.AddBarrier(_session, line, at, failed, stopped));
    }

    /// <summary>Called (on the loop) when a worker is released: the cluster hands its node back.</summary>
    public Action<int>? OnRelease { get; set; }

    void IRunEffects.ReleaseWorker(int worker)
    {
        ((IRunEffects)this).DropWorker(worker);
        OnRelease?.Invoke(worker);
    }

    void IRunEffects.DropWorker(int worker)
    {
        if (_launchers.Remove(worker, out var launcher))
        {
            launcher.Dispose();
        }
    }
}
