using Shoal.Execution;
using Shoal.Journal;
using Shoal.Scheduling;
using Shoal.Tasks;

namespace Shoal.Running;

/// <summary>
/// A run's books and rules, with no I/O of its own: it takes events (a worker joined or was lost, an attempt ended,
/// a tick of the clock, a stop) and says what to do through <see cref="IRunEffects"/> (start this attempt there,
/// signal that one, record this row). Reads the time from the <see cref="TimeProvider"/> it is given and nothing
/// else, so tests drive it synchronously with a fake clock. Not thread-safe: one loop (<see cref="RunLoop"/>) owns it.
/// </summary>
public sealed class RunState
{
    private const byte Pending = 0;
    private const byte Queued = 1;
    private const byte Active = 2;
    private const byte Succeeded = 3;
    private const byte Failed = 4;
    private const byte DoneBefore = 5;
    private const byte FailedBefore = 6;

    private readonly TaskList _tasks;
    private readonly RunOptions _options;
    private readonly IRunEffects _effects;
    private readonly TimeProvider _time;
    private readonly Scheduler _scheduler;
    private readonly byte[] _state;
    private readonly int[] _attempt;
    private readonly byte[] _failures;
    private readonly Dictionary<int, RunningTask> _running = [];
    private readonly PriorityQueue<(int Task, int Attempt), long> _deadlines = new();
    private readonly List<Assignment> _decisions = [];
    private readonly List<(int, int, bool)> _firstFailures = [];
    private readonly HashSet<int> _workers = [];
    private readonly HashSet<int> _releasable = [];
    private readonly Dictionary<int, SpawnTrouble> _spawnTrouble = [];
    private readonly Dictionary<int, CeilingCut> _ceilingCut = [];
    private readonly List<int> _probes = [];
    private readonly List<RecentDeath> _recentDeaths = [];
    private bool _expectingWorkers = true;
    private int _succeeded;
    private int _failed;
    private int _interrupted;
    private int _stopSignal;
    private long _stopKillAt = long.MaxValue;
    private long _stopGiveUpAt = long.MaxValue;
    private int _spawnFailures;
    private string? _spawnError;
    private bool _noMoreStarts;
    private readonly DurationEstimate _durations = new();
    private DateTimeOffset? _end;
    private bool _outOfTime;

    // Barriers split the tasks into phases of consecutive indexes: only the current phase's tasks are queued.
    private readonly int[] _phaseStarts;
    private readonly int[] _laterPending;
    private int _phase = -1;
    private int _phaseOpen;
    private int _failedSoFar;
    private bool _barrierWaits;

    /// <summary>A task killed by one of these signals shortly before our own stop request arrived was most likely
    /// killed by the same stop (SLURM's time limit sends TERM to every process of the job at once).</summary>
    private static readonly TimeSpan StopRace = TimeSpan.FromSeconds(2);

    /// <summary>A run of <paramref name="tasks"/>; call <see cref="Recall"/> for what an earlier session recorded,
    /// then <see cref="Begin"/>.</summary>
    public RunState(TaskList tasks, RunOptions options, IRunEffects effects, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(tasks);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.Retries, RunOptions.MaxRetries);
        _tasks = tasks;
        _options = options;
        _effects = effects;
        _time = time;
        _scheduler = new Scheduler(tasks.Shapes);
        _state = new byte[tasks.Count];
        _attempt = new int[tasks.Count];
        _failures = new byte[tasks.Count];
        _phaseStarts = [0, .. tasks.Barriers.Select(b => b.Before), tasks.Count];
        _laterPending = new int[tasks.Shapes.Count];
    }

    /// <summary>Where the run stopped at a <c>#SHOAL barrier stop-on-failure</c> (its line, and how many tasks above
    /// it failed), or null.</summary>
    public (int Line, int Failed)? StoppedAtBarrier { get; private set; }

    private int PhaseCount => _phaseStarts.Length - 1;

    public RunProgress Progress { get; private set; } = new(0, 0, 0, 0);

    /// <summary>The first task (by id) whose shape no worker can ever hold, or null.</summary>
    public static int? FirstTooLarge(TaskList tasks, IReadOnlyList<WorkerInfo> workers)
    {
        var scheduler = new Scheduler(tasks.Shapes);
        foreach (var w in workers)
        {
            scheduler.AddWorker(w.Id, w.Slots, w.Gpus);
        }

        var fits = tasks.Shapes.Select(scheduler.CouldEverFit).ToArray();
        if (fits.All(f => f))
        {
            return null;
        }

        for (var i = 0; i < tasks.Count; i++)
        {
            if (!fits[tasks.ShapeIndex(i)])
            {
                return i;
            }
        }

        return null;
    }

    /// <summary>What an earlier session recorded as a task's latest attempt (before <see cref="Begin"/>): a task that
    /// succeeded is skipped, one that failed too (unless <see cref="RunOptions.RetryFailed"/>).</summary>
    public void Recall(int taskId, int attempt, AttemptState state, long durationMs)
    {
        var index = _tasks.IndexOf(taskId);
        if (index < 0)
        {
            return;
        }

        if (state is AttemptState.Succeeded or AttemptState.Failed or AttemptState.TimedOut)
        {
            _durations.Add(durationMs); // the next job knows how long tasks take from the first one on
        }

        _attempt[index] = attempt;
        _state[index] = state switch
        {
            AttemptState.Succeeded => DoneBefore,
            AttemptState.Failed or AttemptState.TimedOut when !_options.RetryFailed => FailedBefore,
            _ => Pending,
        };
    }

    /// <summary>Queues every task not finished before (up to the first <c>#SHOAL barrier</c> with tasks left above it).</summary>
    public void Begin()
    {
        Progress = new RunProgress(_tasks.Count, _state.Count(s => s == DoneBefore), _state.Count(s => s == FailedBefore), _time.GetTimestamp());
        for (var i = 0; i < _tasks.Count; i++)
        {
            if (_state[i] == Pending)
            {
                _laterPending[_tasks.ShapeIndex(i)]++;
            }
        }

        for (var s = 0; s < _laterPending.Length; s++)
        {
            _scheduler.Reserve(s, _laterPending[s]);
        }

        EnterNextPhase(recordPassage: false);
    }

    /// <summary>Queues the next phase's tasks not finished before; a phase with none left passes its barrier at once.</summary>
    private void EnterNextPhase(bool recordPassage)
    {
        while (++_phase < PhaseCount)
        {
            _phaseOpen = 0;
            for (var i = _phaseStarts[_phase]; i < _phaseStarts[_phase + 1]; i++)
            {
                if (_state[i] == Pending)
                {
                    _state[i] = Queued;
                    _laterPending[_tasks.ShapeIndex(i)]--;
                    _scheduler.Enqueue(i, _tasks.ShapeIndex(i));
                    _phaseOpen++;
                }
                else if (_state[i] == FailedBefore)
                {
                    _failedSoFar++;
                }
            }

            if (_phaseOpen > 0 || !PassBarrier(recordPassage))
            {
                return;
            }
        }
    }

    /// <summary>The current phase has ended: passes the barrier below it, or stops there (stop-on-failure after a
    /// failure above). False when the run goes no further (stopped there, or it was the last phase).</summary>
    private bool PassBarrier(bool record)
    {
        if (_phase >= _tasks.Barriers.Count)
        {
            return false;
        }

        var barrier = _tasks.Barriers[_phase];
        var stop = barrier.StopOnFailure && _failedSoFar > 0;
        if (record || stop)
        {
            _effects.PassedBarrier(barrier.Line, _failedSoFar, stop);
        }

        if (stop)
        {
            StoppedAtBarrier = (barrier.Line, _failedSoFar);
            return false;
        }

        return true;
    }

    /// <summary>A task of the current phase ended for good (succeeded, or failed after its retries).</summary>
    private void Ended(int task, bool failed)
    {
        if (_phase >= PhaseCount || task < _phaseStarts[_phase] || task >= _phaseStarts[_phase + 1])
        {
            return;
        }

        if (failed)
        {
            _failedSoFar++;
        }

        if (--_phaseOpen == 0 && _stopSignal == 0)
        {
            TryPassBarrier();
        }
    }

    /// <summary>The current phase has ended: pass its barrier, unless one of its tasks died of TERM/INT/HUP/KILL
    /// less than <see cref="StopRace"/> ago (SLURM's time limit may be killing the job: a stop would make that death
    /// an interruption, and the task must run before anything below). Then <see cref="Tick"/> tries again.</summary>
    private void TryPassBarrier()
    {
        _barrierWaits = _recentDeaths.Any(d => InPhase(d.Task));
        if (!_barrierWaits && PassBarrier(record: true))
        {
            EnterNextPhase(recordPassage: true);
        }
    }

    private bool InPhase(int task) => _phase < PhaseCount && task >= _phaseStarts[_phase] && task < _phaseStarts[_phase + 1];

    /// <summary>A task counted as ended goes back to pending (its failure was our stop's doing).</summary>
    private void Reopened(int task)
    {
        if (InPhase(task))
        {
            _phaseOpen++;
            _failedSoFar--;
        }
    }

    /// <summary>When the allocation ends (null: no end known). Set at the start and whenever it is read again (an
    /// administrator may extend a job).</summary>
    public void SetEnd(DateTimeOffset? end) => _end = end;

    /// <summary>When the allocation ends, if known.</summary>
    public DateTimeOffset? End => _end;

    /// <summary>How long a task of <paramref name="shapeIndex"/> is expected to run: its timeout when it has one, else
    /// the 95th percentile of what finished attempts took (null before any finished).</summary>
    public TimeSpan? Expected(int shapeIndex) => Expected(shapeIndex, _durations.Percentile(0.95));

    private TimeSpan? Expected(int shapeIndex, TimeSpan? learned) => _tasks.Shapes[shapeIndex].Timeout ?? _options.Timeout ?? learned;

    /// <summary>After a batch of events: starts what fits (unless stopping) and publishes the counters.</summary>
    public void Settle()
    {
        if (_stopSignal == 0 && !_noMoreStarts)
        {
            HoldWhatCannotFinish();
            StartWhatFits();
            if (_options.ReleaseIdleWorkers)
            {
                ReleaseIdleWorkers();
            }
        }

        Progress.Set(_succeeded, _failed, _running.Count, _interrupted);
    }

    /// <summary>How the run ended (once <see cref="Finished"/>), <paramref name="elapsed"/> after it began.</summary>
    public RunOutcome Outcome(TimeSpan elapsed)
    {
        var notRun = _state.Count(s => s is Queued or Pending);
        return new RunOutcome(
            _tasks.Count,
            Progress.AlreadyDone,
            Progress.AlreadyFailed,
            _succeeded,
            _failed,
            _interrupted,
            notRun,
            elapsed,
            _stopSignal,
            _firstFailures)
        {
            SpawnFailures = _spawnFailures,
            SpawnError = _spawnError,
            OutOfTime = _outOfTime && _stopSignal == 0 && notRun > 0,
            End = _end,
            StoppedAtBarrier = StoppedAtBarrier,
        };
    }

    /// <summary>Nothing runs and nothing more will start: the run is over.
    /// A task that died of TERM/INT/HUP/KILL in the last <see cref="StopRace"/> keeps the run open that long: the stop
    /// that killed it may be on its way, and it would make that death an interruption (rerun on resume).</summary>
    public bool Finished => _running.Count == 0 && (_stopSignal != 0 || _recentDeaths.Count == 0)
        && ((_scheduler.Queued == 0 && !_barrierWaits) || _stopSignal != 0 || _noMoreStarts || _outOfTime || (!_expectingWorkers && _workers.Count == 0));

    /// <summary>Hands back every releasable worker that runs nothing and that no queued task can use any more (the
    /// queue is empty, or what is left can never fit it): at a run's tail, nodes stop being charged while the last
    /// tasks finish elsewhere. Tasks held for lack of time do not count as unusable: a hold can lift (the end is
    /// extended, the estimate drops), and a released node cannot come back.</summary>
    private void ReleaseIdleWorkers()
    {
        if (_releasable.Count == 0 || _running.Count == 0)
        {
            return; // nothing runs anywhere: the run is ending (or waiting for workers), the job ends with it
        }

        List<int>? release = null;
        foreach (var worker in _releasable)
        {
            if (_scheduler.IsIdle(worker) && !_scheduler.AnyQueuedFor(worker) && !AnyLaterFor(worker))
            {
                (release ??= []).Add(worker);
            }
        }

        foreach (var worker in release ?? [])
        {
            _releasable.Remove(worker);
            _workers.Remove(worker);
            _scheduler.RemoveWorker(worker);
            _spawnTrouble.Remove(worker);
            _ceilingCut.Remove(worker);
            Released++;
            _effects.ReleaseWorker(worker);
        }
    }

    /// <summary>True when a task of a later phase (below a barrier not passed yet) could run on the worker.</summary>
    private bool AnyLaterFor(int worker)
    {
        for (var s = 0; s < _laterPending.Length; s++)
        {
            if (_laterPending[s] > 0 && _scheduler.CouldEverFit(worker, _tasks.Shapes[s]))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Workers whose nodes were handed back.</summary>
    public int Released { get; private set; }

    /// <summary>With the allocation's end known: holds the queue of every shape whose tasks are expected to end after
    /// <c>end - EndMargin</c> (they wait for the next job), and notes when nothing queued can start any more.</summary>
    private void HoldWhatCannotFinish()
    {
        if (_end is not { } end || _scheduler.Queued == 0)
        {
            _outOfTime = false;
            return;
        }

        var left = end - _time.GetUtcNow() - _options.EndMargin;
        var learned = _durations.Percentile(0.95); // once per settle, not once per shape
        for (var s = 0; s < _tasks.Shapes.Count; s++)
        {
            if (_scheduler.HasQueued(s))
            {
                _scheduler.Hold(s, left <= TimeSpan.Zero || (Expected(s, learned) ?? TimeSpan.Zero) > left);
            }
        }

        _outOfTime = !_scheduler.AnyStartable();
    }

    /// <summary>Why the journal stopped accepting rows, when it did (the run then stopped).</summary>
    public string? JournalError { get; private set; }

    /// <summary>True when the run ended because every worker was lost with tasks still queued.</summary>
    public bool RanOutOfWorkers { get; private set; }

    /// <summary>A worker joined: its slots and GPUs become schedulable.</summary>
    public void Join(WorkerInfo worker)
    {
        ArgumentNullException.ThrowIfNull(worker);
        _scheduler.AddWorker(worker.Id, worker.Slots, worker.Gpus);
        _workers.Add(worker.Id);
        if (worker.Releasable)
        {
            _releasable.Add(worker.Id);
        }
    }

    /// <summary>No worker will join any more: once none is left, the run ends even with tasks queued.</summary>
    public void NoMoreWorkers()
    {
        _expectingWorkers = false;
        RanOutOfWorkers = _workers.Count == 0 && _scheduler.Queued > 0 && _stopSignal == 0;
    }

    /// <summary>The journal stopped accepting rows (disk full, read-only filesystem): stop as for SIGTERM, so that no
    /// task runs whose result would be lost. What was recorded stays intact for the resume.</summary>
    public void JournalFailed(string message)
    {
        if (JournalError is null)
        {
            JournalError = message;
            Stop(Native.SIGTERM);
        }
    }

    private void StartWhatFits()
    {
        _decisions.Clear();
        _scheduler.Schedule(_decisions);
        var now = _time.GetTimestamp();
        var nowMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
        foreach (var a in _decisions)
        {
            var task = a.Task;
            var attempt = ++_attempt[task];
            _state[task] = Active;
            var timeout = _tasks.Shape(task).Timeout ?? _options.Timeout;
            _running[task] = new RunningTask(attempt, a, now);
            if (timeout is { } t)
            {
                _deadlines.Enqueue((task, attempt), now + (long)(t.TotalSeconds * _time.TimestampFrequency));
            }

            _effects.Record(new AttemptRecord(_tasks.Id(task), attempt, AttemptState.Running, 0, nowMs, 0, _options.Session, a.Worker, a.Lane, 0, 0, 0, 0));
            _effects.Launch(a.Worker, new LaunchRequest(task, _tasks.Id(task), attempt, _tasks.CommandBytes(task), a.Lane, a.Cpus, _options.ManageGpus ? a.Gpus : null));
        }
    }

    /// <summary>An attempt ended (or never started: <see cref="TaskExit.SpawnFailed"/>).</summary>
    public void Exited(TaskExit exit)
    {
        var task = exit.Task;
        if (!_running.TryGetValue(task, out var run) || run.Attempt != exit.Attempt || run.Assignment.Worker != exit.Worker)
        {
            return; // a late report of an attempt already given up on
        }

        _running.Remove(task);
        var a = _scheduler.Release(task);
        if (exit.SpawnFailed)
        {
            OnSpawnFailed(task, run, exit);
            return;
        }

        if (_spawnTrouble.TryGetValue(exit.Worker, out var trouble) && run.Started > trouble.LastFailure)
        {
            _spawnTrouble.Remove(exit.Worker); // it started a process again
        }

        if (_ceilingCut.TryGetValue(exit.Worker, out var cut) && run.Started > cut.At)
        {
            cut.Streak = 0; // a process started after the cut ended well: the machine has room again
            RaiseCeiling(exit.Worker);
        }

        var status = exit.Signal != 0 ? -exit.Signal : exit.ExitCode;
        AttemptState state;
        if (status == 0 && !exit.Signalled)
        {
            // Its own clean exit came before any signal of ours reached it (a stop or a timeout raced with its end).
            state = AttemptState.Succeeded;
        }
        else if (run.Interrupted)
        {
            // Includes a task that caught our TERM and exited 0: it answered the stop, its work may be unfinished.
            state = AttemptState.Interrupted;
        }
        else if (run.TimedOut)
        {
            state = AttemptState.TimedOut;
        }
        else
        {
            state = status == 0 ? AttemptState.Succeeded : AttemptState.Failed;
        }

        if (state is AttemptState.Succeeded or AttemptState.Failed or AttemptState.TimedOut)
        {
            _durations.Add(exit.DurationMs);
        }

        var record = new AttemptRecord(_tasks.Id(task), exit.Attempt, state, status, exit.StartUnixMs, exit.DurationMs, _options.Session, a.Worker, exit.Lane, exit.OutOffset, exit.OutLength, exit.ErrOffset, exit.ErrLength, exit.Log);
        _effects.Record(record);
        switch (state)
        {
            case AttemptState.Succeeded:
                _state[task] = Succeeded;
                _succeeded++;
                Ended(task, failed: false);
                break;
            case AttemptState.Interrupted:
                _state[task] = Pending;
                _interrupted++;
                break;
            default:
                if (state == AttemptState.Failed && _stopSignal == 0 && IsStopSignal(exit, status))
                {
                    _recentDeaths.Add(new RecentDeath(task, record, _time.GetTimestamp()));
                }

                if (_failures[task] < _options.Retries && _stopSignal == 0)
                {
                    _failures[task]++;
                    _state[task] = Queued;
                    _scheduler.Enqueue(task, _tasks.ShapeIndex(task));
                }
                else
                {
                    _state[task] = Failed;
                    _failed++;
                    if (_firstFailures.Count < 5)
                    {
                        _firstFailures.Add((_tasks.Id(task), status, state == AttemptState.TimedOut));
                    }

                    Ended(task, failed: true);
                }

                break;
        }
    }

    /// <summary>Killed by TERM/INT/HUP/KILL, or a shell reporting its child was (128+n): what a job-wide stop does.</summary>
    private static bool IsStopSignal(TaskExit exit, int status) =>
        exit.Signal is Native.SIGTERM or Native.SIGINT or Native.SIGKILL or 1 || status is 128 + Native.SIGTERM or 128 + Native.SIGINT or 128 + 1;

    /// <summary>The attempt never started: the machine's failure (process or open-file limit), not the task's. It is
    /// recorded as interrupted and queued again. While other tasks run on the worker, it gets at most as many at once
    /// as run now; that ceiling rises by one with each later task that ends, and after a backoff (50 ms to 5 s,
    /// doubling with each cut in a row). With none running, it gets no new task for that backoff. A worker that
    /// starts nothing for <see cref="RunOptions.SpawnGiveUp"/> is given up: lost (its tasks go to other workers),
    /// and the run ends if it was the last.</summary>
    private void OnSpawnFailed(int task, RunningTask run, TaskExit exit)
    {
        var now = _time.GetTimestamp();
        _spawnFailures++;
        _effects.Record(new AttemptRecord(_tasks.Id(task), exit.Attempt, AttemptState.Interrupted, 0, exit.StartUnixMs, 0, _options.Session, exit.Worker, exit.Lane, 0, 0, 0, 0, exit.Log));
        Requeue(task);

        // Processes still run there: the machine holds about that many now. Start no more than that (no pause of
        // the worker: its running tasks' ends let the next ones start).
        var (ceiling, busy, _) = _scheduler.Load(exit.Worker);
        if (busy > 0)
        {
            _scheduler.Limit(exit.Worker, Math.Min(ceiling, busy));
            if (!_ceilingCut.TryGetValue(exit.Worker, out var cut))
            {
                cut = new CeilingCut();
                _ceilingCut[exit.Worker] = cut;
            }

            // The tasks that run may run for hours: without an end to raise it, the ceiling also rises by one after
            // a backoff that doubles with each cut in a row (50 ms to 5 s).
            if (run.Started > cut.At)
            {
                cut.Streak++; // not for the rest of a burst started before the last cut
            }

            cut.At = now;
            cut.ProbeAt = now + Backoff(cut.Streak);
            return;
        }

        if (!_spawnTrouble.TryGetValue(exit.Worker, out var trouble))
        {
            trouble = new SpawnTrouble { First = now };
            _spawnTrouble[exit.Worker] = trouble;
        }

        if (run.Started < trouble.LastFailure)
        {
            return; // one of a burst started before the last backoff: it does not double the wait again
        }

        trouble.Streak++;
        trouble.LastFailure = now;
        trouble.Message = System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(exit.ExitCode);
        if (_time.GetElapsedTime(trouble.First, now) >= _options.SpawnGiveUp)
        {
            _spawnError = $"worker {exit.Worker} could not start any task for {_options.SpawnGiveUp.TotalSeconds:0.#} s ({trouble.Message}; a process or open-file limit? see ulimit -u and ulimit -n)";
            if (_workers.Count > 1)
            {
                LoseWorker(exit.Worker); // the others go on; its running tasks are requeued
            }
            else
            {
                // The only worker: start nothing more, let what runs finish, end with the rest not run (exit 1).
                _noMoreStarts = true;
                _scheduler.ClearQueue();
                _scheduler.Pause(exit.Worker, true);
                trouble.ResumeAt = 0;
            }

            return;
        }

        trouble.ResumeAt = now + Backoff(trouble.Streak);
        _scheduler.Pause(exit.Worker, true);
    }

    /// <summary>The wait after the <paramref name="streak"/>-th refusal in a row, in timestamp ticks: 50 ms, doubling,
    /// at most 5 s.</summary>
    private long Backoff(int streak) =>
        (long)(Math.Min(5000, 50 << Math.Clamp(streak - 1, 0, 10)) / 1000.0 * _time.TimestampFrequency);

    /// <summary>A task started under a lowered ceiling ended well, or the backoff passed: let the worker try one
    /// process more (one more refused start lowers it again), up to all its slots.</summary>
    private void RaiseCeiling(int worker)
    {
        var (ceiling, _, slots) = _scheduler.Load(worker);
        if (ceiling + 1 >= slots)
        {
            _scheduler.Limit(worker, int.MaxValue);
            _ceilingCut.Remove(worker);
        }
        else
        {
            _scheduler.Limit(worker, ceiling + 1);
        }
    }

    /// <summary>The clock moved (every 100 ms): timeouts, backoffs and the stop's KILL come due.</summary>
    public void Tick()
    {
        var now = _time.GetTimestamp();
        while (_deadlines.TryPeek(out var entry, out var deadline) && deadline <= now)
        {
            _deadlines.Dequeue();
            if (!_running.TryGetValue(entry.Task, out var run) || run.Attempt != entry.Attempt || run.Interrupted)
            {
                continue;
            }

            if (!run.TimedOut)
            {
                run.TimedOut = true;
                Signal(entry.Task, Native.SIGTERM);
                _deadlines.Enqueue(entry, now + (long)(_options.Grace.TotalSeconds * _time.TimestampFrequency));
            }
            else
            {
                Signal(entry.Task, Native.SIGKILL);
            }
        }

        foreach (var (worker, cut) in _ceilingCut)
        {
            if (now >= cut.ProbeAt)
            {
                cut.ProbeAt = now + Backoff(cut.Streak);
                _probes.Add(worker);
            }
        }

        foreach (var worker in _probes)
        {
            RaiseCeiling(worker); // may remove the cut: outside the enumeration
        }

        _probes.Clear();
        foreach (var (worker, trouble) in _spawnTrouble)
        {
            if (trouble.ResumeAt != 0 && now >= trouble.ResumeAt)
            {
                trouble.ResumeAt = 0;
                _scheduler.Pause(worker, false);
            }
        }

        _recentDeaths.RemoveAll(d => _time.GetElapsedTime(d.At, now) > StopRace);
        if (_barrierWaits && _stopSignal == 0 && _phaseOpen == 0)
        {
            TryPassBarrier();
        }

        if (now >= _stopKillAt)
        {
            _stopKillAt = long.MaxValue;
            KillAll(Native.SIGKILL);
        }

        if (now >= _stopGiveUpAt)
        {
            _stopGiveUpAt = long.MaxValue;
            AbandonRunning();
        }
    }

    /// <summary>The stop's KILL went out <see cref="RunOptions.StopDrain"/> ago and some exits never came (a worker
    /// that stopped answering): record those attempts as interrupted and end without them.</summary>
    private void AbandonRunning()
    {
        var nowMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
        foreach (var (task, run) in _running.ToList())
        {
            _scheduler.Release(task);
            Interrupt(task, run, nowMs);
        }
    }

    /// <summary>A running attempt whose end will never be reported (its worker is gone or silent): recorded as
    /// interrupted, and the task goes back to the queue.</summary>
    private void Interrupt(int task, RunningTask run, long nowMs)
    {
        _running.Remove(task);
        _effects.Record(new AttemptRecord(_tasks.Id(task), run.Attempt, AttemptState.Interrupted, 0, nowMs, 0, _options.Session, run.Assignment.Worker, run.Assignment.Lane, 0, 0, 0, 0));
        _interrupted++;
        Requeue(task);
    }

    /// <summary>Queues a task to run again, or, during a stop, leaves it pending for the resume.</summary>
    private void Requeue(int task)
    {
        if (_stopSignal == 0)
        {
            _state[task] = Queued;
            _scheduler.Enqueue(task, _tasks.ShapeIndex(task));
        }
        else
        {
            _state[task] = Pending;
        }
    }

    /// <summary>Stop (SIGINT/SIGTERM): no new starts, running tasks get TERM, then KILL after the grace; asked
    /// twice, KILL now.</summary>
    public void Stop(int signal)
    {
        var now = _time.GetTimestamp();
        if (_stopSignal != 0)
        {
            // Asked twice: do not wait for the rest of the grace period.
            _stopKillAt = long.MaxValue;
            KillAll(Native.SIGKILL);
            _stopGiveUpAt = Math.Min(_stopGiveUpAt, now + (long)(_options.StopDrain.TotalSeconds * _time.TimestampFrequency));
            return;
        }

        _stopSignal = signal;
        _scheduler.ClearQueue();
        foreach (var (task, run) in _running)
        {
            run.Interrupted = true;
            Signal(task, Native.SIGTERM);
        }

        ReclassifyRecentDeaths(now);
        _stopKillAt = now + (long)(_options.Grace.TotalSeconds * _time.TimestampFrequency);
        _stopGiveUpAt = _stopKillAt + (long)(_options.StopDrain.TotalSeconds * _time.TimestampFrequency);
    }

    /// <summary>Tasks that died of TERM/INT/HUP/KILL just before this stop arrived were most likely killed by the same
    /// stop (SLURM's time limit signals every process of the job; the task's exit can reach us before our own
    /// signal handler does): record them as interrupted, so the resume reruns them, instead of as failed.</summary>
    private void ReclassifyRecentDeaths(long now)
    {
        foreach (var death in _recentDeaths)
        {
            if (_time.GetElapsedTime(death.At, now) > StopRace || _state[death.Task] == Succeeded)
            {
                continue; // too long ago to be this stop's doing, or its retry has succeeded since
            }

            var task = death.Task;
            _effects.Record(death.Record with { State = AttemptState.Interrupted });
            _interrupted++;
            switch (_state[task])
            {
                case Failed:
                    _failed--;
                    _firstFailures.RemoveAll(f => f.Item1 == death.Record.TaskId);
                    _state[task] = Pending;
                    Reopened(task);
                    break;
                case Queued:
                    _failures[task]--;
                    _state[task] = Pending;
                    break;
                default:
                    _failures[task]--; // its retry is running and is being interrupted too
                    break;
            }
        }

        _recentDeaths.Clear();
    }

    private void KillAll(int signal)
    {
        foreach (var task in _running.Keys)
        {
            Signal(task, signal);
        }
    }

    private void Signal(int task, int signal)
    {
        if (_running.TryGetValue(task, out var run) && _workers.Contains(run.Assignment.Worker))
        {
            _effects.Signal(run.Assignment.Worker, task, signal);
        }
    }

    /// <summary>A worker is gone: its running attempts are recorded as interrupted and queued again.</summary>
    public void LoseWorker(int worker)
    {
        if (!_workers.Remove(worker))
        {
            return;
        }

        _releasable.Remove(worker);
        _spawnTrouble.Remove(worker);
        _ceilingCut.Remove(worker);
        _effects.DropWorker(worker);
        var nowMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
        foreach (var task in _scheduler.RemoveWorker(worker))
        {
            Interrupt(task, _running[task], nowMs);
        }

        if (!_expectingWorkers && _workers.Count == 0 && _scheduler.Queued > 0 && _stopSignal == 0)
        {
            RanOutOfWorkers = true;
        }
    }

    private sealed class RunningTask(int attempt, Assignment assignment, long started)
    {
        public int Attempt { get; } = attempt;

        public long Started { get; } = started;

        public Assignment Assignment { get; } = assignment;

        public bool TimedOut { get; set; }

        public bool Interrupted { get; set; }
    }

    /// <summary>A worker's lowered ceiling: when it was last cut, when it next rises by one without an end to
    /// raise it, and how many cuts came in a row (the backoff of that rise).</summary>
    private sealed class CeilingCut
    {
        public long At { get; set; } = long.MinValue;

        public long ProbeAt { get; set; }

        public int Streak { get; set; }
    }

    private sealed class SpawnTrouble
    {
        public long First { get; init; }

        public long LastFailure { get; set; }

        public long ResumeAt { get; set; }

        public int Streak { get; set; }

        public string Message { get; set; } = "";
    }

    private readonly record struct RecentDeath(int Task, AttemptRecord Record, long At);
}
