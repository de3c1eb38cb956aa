using System.Globalization;
using Shoal.Cluster;
using Shoal.Execution;
using Shoal.Journal;
using Shoal.Tasks;

namespace Shoal.Running;

/// <summary>Everything a run needs, decided by the caller (the CLI parses it; tests build it).</summary>
public sealed record RunSettings(TaskList Tasks, string RunDirectory, RunOptions Options, string Shell)
{
    /// <summary>The SLURM allocation to spread over, or null for this machine alone.</summary>
    public SlurmAllocation? Allocation { get; init; }

    /// <summary>This machine's slots and GPUs (single-machine runs).</summary>
    public int Slots { get; init; } = 1;

    public IReadOnlyList<string> Gpus { get; init; } = [];

    public bool Quiet { get; init; }

    /// <summary>Recorded in the session row, for people reading the journal.</summary>
    public string CommandLine { get; init; } = "";

    /// <summary>Threads that call posix_spawn on this machine.</summary>
    public int SpawnerThreads { get; init; } = 1;

    /// <summary>The SLURM job this runs in (also with --local), or null.</summary>
    public string? JobId { get; init; }

    /// <summary>The job's end from SLURM_JOB_END_TIME, when set (else squeue is asked when <see cref="JobId"/> is).</summary>
    public DateTimeOffset? JobEnd { get; init; }

    /// <summary>--end-margin, or null for <see cref="RunOptions.DefaultEndMargin"/>.</summary>
    public TimeSpan? EndMargin { get; init; }

    /// <summary>--continue: when the allocation ends before the run, submit the job's batch script again.</summary>
    public bool Continue { get; init; }

    /// <summary>--keep-nodes: never hand an idle node back to SLURM.</summary>
    public bool KeepNodes { get; init; }

    /// <summary>--max-jobs: the most jobs a chain may have.</summary>
    public int MaxJobs { get; init; } = RunSession.DefaultMaxJobs;

    /// <summary>Start plain-word commands without the shell (see <see cref="Execution.DirectExec"/>).</summary>
    public bool DirectExec { get; init; }

    /// <summary>What each node runs before its first task and after its last (null: nothing).</summary>
    public NodeStepPlan? NodeSteps { get; init; }
}

/// <summary>
/// One session of a run: takes the run directory, checks the journal belongs to these tasks, ends what an earlier
/// killed shoal left running, records the session, runs the loop on this machine or on the allocation's workers,
/// and closes the journal. The CLI adds only parsing, the progress display and the summary.
/// </summary>
public sealed class RunSession : IAsyncDisposable
{
    private readonly RunSettings _settings;
    private readonly RunDirectory _runDir;
    private readonly RunJournal _journal;
    private readonly JournalWriter _writer;
    private readonly RunLoop _loop;
    private readonly SlurmLeader? _cluster;
    private readonly int _session;
    private readonly CancellationTokenSource _refresh = new();
    private DateTimeOffset? _end;
    private DateTimeOffset? _stoppedAt;
    private TimeSpan? _limit;
    private Action<string>? _log;
    private NodeSession? _localNode;
    private Action? _localJoin;
    private readonly CancellationTokenSource _stopping = new();
    private readonly CancellationTokenSource _hurry = new();
    private int _stopRequests;

    /// <summary>How many jobs a chain may have without --max-jobs.</summary>
    public const int DefaultMaxJobs = 20;

    /// <summary>A TERM this close to the allocation's end (or later) is taken for the time limit's: with --continue,
    /// the run goes on in the next job. Earlier, it is a user's scancel and the chain ends.</summary>
    public static readonly TimeSpan TimeLimitWindow = TimeSpan.FromMinutes(5);

    private RunSession(RunSettings settings, RunDirectory runDir, RunJournal journal, JournalWriter writer, RunLoop loop, SlurmLeader? cluster, int session)
    {
        _settings = settings;
        _runDir = runDir;
        _journal = journal;
        _writer = writer;
        _loop = loop;
        _cluster = cluster;
        _session = session;
    }

    public RunDirectory Directory => _runDir;

    public RunProgress Progress => _loop.Progress;

    /// <summary>True when the run ended because every worker was lost with tasks still queued.</summary>
    public bool RanOutOfWorkers => _loop.RanOutOfWorkers;

    /// <summary>The workers the run expects, before any joined: this machine, or one per node of the allocation.</summary>
    public static WorkerInfo[] PlannedWorkers(RunSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        return settings.Allocation is not { } a
            ? [new WorkerInfo(0, Environment.MachineName, settings.Slots, settings.Gpus)]
            : [.. a.Nodes.Select((n, i) => new WorkerInfo(i, n, a.CpusPerNode[i], [.. Enumerable.Range(0, a.GpusPerNode).Select(g => g.ToString(CultureInfo.InvariantCulture))]))];
    }

    /// <summary>Opens the session. Throws <see cref="TaskInputException"/> for a task no worker can hold and
    /// <see cref="JournalException"/> for a run directory in use or made for other tasks (both: exit 2).</summary>
    public static async Task<RunSession> OpenAsync(RunSettings settings, Action<string> log)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(log);
        var tasks = settings.Tasks;
        var allocation = settings.Allocation;
        var planned = PlannedWorkers(settings);
        if (RunState.FirstTooLarge(tasks, planned) is { } big)
        {
            var shape = tasks.Shape(big);
            var offer = allocation is null
                ? $"this machine offers {settings.Slots} slots and {settings.Gpus.Count} GPUs{(settings.Gpus.Count == 0 && shape.Gpus > 0 ? " (give them with --gpus or CUDA_VISIBLE_DEVICES)" : "")}"
                : $"the largest node of the allocation has {allocation.CpusPerNode.Max()} CPUs and {allocation.GpusPerNode} GPUs";
            throw new TaskInputException($"{tasks.Origin}:{tasks.Lines[big]}: the task asks for {shape.Cpus} CPUs and {shape.Gpus} GPUs, but {offer}");
        }

        var runDir = new RunDirectory(settings.RunDirectory);
        RunJournal? journal = null;
        JournalWriter? writer = null;
        try
        {
            runDir.Acquire(settings.Continue ? TimeSpan.FromSeconds(90) : TimeSpan.Zero);
            var (end, limit) = await ReadEndAsync(settings, runDir).ConfigureAwait(false);
            journal = RunJournal.Open(runDir.JournalPath, create: true);
            CheckSameTasks(journal, tasks, runDir);
            if (journal.Sessions().Any(s => s.Ended is null))
            {
                // An earlier shoal was killed: its tasks may still run here. End them before anything starts, or a
                // task could run twice at once (they are recorded as interrupted and run again).
                var survivors = Leftovers.EndTasksOf(runDir.Path, settings.Options.Grace);
                if (survivors.Count > 0)
                {
                    log($"ended the processes of {survivors.Count} task(s) still running from an earlier shoal that did not end cleanly: {string.Join(", ", survivors.Take(20))}{(survivors.Count > 20 ? ", ..." : "")}");
                }
            }

            var host = Environment.MachineName;
            var session = journal.BeginSession(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), host, Environment.ProcessId, settings.CommandLine);
            if (allocation is null)
            {
                journal.AddWorker(session, 0, host, settings.Slots, string.Join(',', settings.Gpus), "w0-");
            }

            if (settings.JobId is { } job)
            {
                journal.SetSessionJob(session, job);
            }

            journal.SetMeta(new Dictionary<string, string> { ["job.end"] = EndMeta(end) });

            var options = settings.Options with
            {
                Session = session,
                ManageGpus = allocation is null ? settings.Gpus.Count > 0 : allocation.GpusPerNode > 0,
                ReleaseIdleWorkers = allocation is not null && !settings.KeepNodes,
                EndMargin = settings.EndMargin ?? RunOptions.DefaultEndMargin(settings.Options.Grace, limit ?? (end is { } e ? e - DateTimeOffset.UtcNow : null)),
            };
            writer = new JournalWriter(journal);
            var loop = new RunLoop(tasks, options, journal, writer, TimeProvider.System);
            loop.SetEnd(end);
            SlurmLeader? cluster = null;
            NodeSession? localNode = null;
            Action? localJoin = null;
            var steps = settings.NodeSteps is { Any: true } plan ? plan : null;
            if (allocation is null)
            {
                var launcherOptions = new ProcessLauncherOptions(
                    settings.Shell,
                    runDir.LogDirectory(session),
                    settings.Slots,
                    [new("SHOAL_RUN_DIR", runDir.Path), new("SHOAL_NODE", NodeName())],
                    "w0-",
                    settings.SpawnerThreads)
                { DirectExec = settings.DirectExec };
                if (steps is null)
                {
                    loop.AddWorker(planned[0], new ProcessLauncher(launcherOptions, loop.InlineExitSink));
                    loop.ExpectNoMoreWorkers();
                }
                else
                {
                    // The machine joins once its setup has passed (RunAsync).
                    localNode = new NodeSession(steps, runDir.Path, session, NodeName(), settings.Slots, settings.Gpus, options.ManageGpus, runDir.LogDirectory(session), "w0-");
                    localJoin = () => loop.AddWorker(planned[0], new ProcessLauncher(launcherOptions, loop.InlineExitSink));
                }
            }
            else
            {
                cluster = new SlurmLeader(allocation, loop, writer, runDir, session, settings.Shell, settings.Quiet) { Steps = steps, ManageGpus = options.ManageGpus, DirectExec = settings.DirectExec };
            }

            return new RunSession(settings with { Options = options }, runDir, journal, writer, loop, cluster, session) { _end = end, _limit = limit, _localNode = localNode, _localJoin = localJoin };
        }
        catch
        {
            writer?.Dispose();
            journal?.Dispose();
            runDir.Dispose();
            throw;
        }
    }

    /// <summary>Where the run goes, for the start line.</summary>
    public string Describe()
    {
        var s = _settings;
        return s.Allocation is { } a
            ? a.Describe()
            : $"{s.Slots} slots, {(s.Gpus.Count == 0 ? "no GPUs" : $"GPUs {string.Join(',', s.Gpus)}")} on {Environment.MachineName}";
    }

    /// <summary>When the allocation ends, if known.</summary>
    public DateTimeOffset? End => _end;

    /// <summary>The margin in force: tasks expected to end later than this before <see cref="End"/> wait.</summary>
    public TimeSpan EndMargin => _settings.Options.EndMargin;

    /// <summary>Stop (any thread): see <see cref="RunLoop.RequestStop"/>.</summary>
    public void RequestStop(int signal)
    {
        _stoppedAt ??= DateTimeOffset.UtcNow;
        _loop.RequestStop(signal);
        try
        {
            // A node setup in progress here ends too; asked twice, so does the teardown.
            (Interlocked.Increment(ref _stopRequests) == 1 ? _stopping : _hurry).Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The session is over.
        }
    }

    /// <summary>This machine's name for SHOAL_NODE: SLURM's name for it inside a job, else its host name.</summary>
    private static string NodeName() => LocalMachine.NodeName(Environment.GetEnvironmentVariable);

    /// <summary>Runs to the end: starts the workers, runs the loop, waits for the workers' step, closes the journal
    /// (throws <see cref="JournalException"/> when it could not be written) and ends the session; with
    /// <see cref="RunSettings.Continue"/>, submits the next job when the allocation ended first.</summary>
    public async Task<RunOutcome> RunAsync(Action<string> log)
    {
        ArgumentNullException.ThrowIfNull(log);
        _log = log;
        _cluster?.Start();
        var refresh = _settings.JobId is not null && _settings.JobEnd is null ? RefreshEndAsync(_refresh.Token) : Task.CompletedTask;
        var setupFailures = 0;
        var setupsPassed = 0;
        if (_localNode is not null)
        {
            var setup = await _localNode.SetupAsync(_stopping.Token).ConfigureAwait(false);
            if (setup is not null)
            {
                RecordStep(setup, log);
            }

            if (_localNode.LeftoversEnded > 0)
            {
                log($"ended {_localNode.LeftoversEnded} process(es) that node steps of an earlier, killed session left running here");
            }

            if (setup is null || setup.Succeeded)
            {
                setupsPassed++;
                _localJoin!();
            }
            else if (!_stopping.IsCancellationRequested)
            {
                setupFailures++;
            }

            _loop.ExpectNoMoreWorkers();
        }

        var outcome = await _loop.RunAsync(CancellationToken.None).ConfigureAwait(false);
        await _refresh.CancelAsync().ConfigureAwait(false);
        await refresh.ConfigureAwait(false);
        if (_localNode is not null && await _localNode.TeardownAsync(_hurry.Token).ConfigureAwait(false) is { } teardown)
        {
            RecordStep(teardown, log);
        }

        if (_cluster is not null)
        {
            await _cluster.FinishAsync(waitForReleases: outcome.StopSignal == 0).ConfigureAwait(false);
            setupFailures = _cluster.SetupFailures;
            setupsPassed = _cluster.SetupsPassed;
        }

        outcome = outcome with
        {
            SetupFailures = setupFailures,
            SetupFailedEverywhere = setupFailures > 0 && setupsPassed == 0 && _loop.RanOutOfWorkers,
        };

        _writer.Complete();
        var why = outcome.StopSignal != 0 ? $"stopped by signal {outcome.StopSignal}" : outcome.OutOfTime ? "out of time, exit 75" : $"finished, exit {outcome.ExitCode}";
        _journal.EndSession(_session, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), why);
        if (_settings.Continue)
        {
            outcome = outcome with { NextJob = await ContinueAsync(outcome, log).ConfigureAwait(false) };
        }

        return outcome;
    }

    /// <summary>Records this machine's setup or teardown and tells of a failure.</summary>
    private void RecordStep(NodeStepResult step, Action<string> log)
    {
        var host = NodeName();
        _writer.Enqueue(j => j.AddNodeStep(_session, 0, host, step));
        if (step.FailureMessage(host) is { } failure)
        {
            log(failure);
        }
        else if (!_settings.Quiet)
        {
            log($"node {(step.Step == NodeStep.Setup ? "setup" : "teardown")} on {host}: {step.Describe()}");
        }
    }

    /// <summary>Why the run does not go on in a next job, or null when it does.</summary>
    public static string? WhyNotContinue(RunOutcome outcome, bool stoppedByTimeLimit, bool ranOutOfWorkers, int jobsSoFar, int maxJobs)
    {
        ArgumentNullException.ThrowIfNull(outcome);
        if (outcome.NotRun == 0)
        {
            return "nothing is left to run";
        }

        if (ranOutOfWorkers || outcome.SpawnError is not null)
        {
            return "the run lost its workers";
        }

        if (!outcome.OutOfTime && !(outcome.StopSignal == Native.SIGTERM && stoppedByTimeLimit))
        {
            return outcome.StopSignal != 0 ? $"it was stopped by signal {outcome.StopSignal} before the allocation's end" : "it did not end for lack of time";
        }

        if (outcome.Succeeded + outcome.Failed == 0)
        {
            return "this job finished no task (no progress: a next job would do the same)";
        }

        if (jobsSoFar >= maxJobs)
        {
            return $"the chain has its {maxJobs} jobs (--max-jobs)";
        }

        return null;
    }

    private async Task<string?> ContinueAsync(RunOutcome outcome, Action<string> log)
    {
        if (_settings.JobId is not { } job)
        {
            log("--continue: not inside a SLURM job; nothing to submit");
            return null;
        }

        if (Environment.GetEnvironmentVariable("SLURM_ARRAY_JOB_ID") is { Length: > 0 })
        {
            log("not continuing in a next job: this is an element of a job array (its script would submit the whole array)");
            return null;
        }

        // This job and those that submitted it, back to the first (a shoal submit, or a job nobody submitted).
        var chain = _journal.Chain();
        var jobsSoFar = 1;
        for (var current = job; chain.FirstOrDefault(c => c.Job == current) is { } link && !link.By.StartsWith("submit:", StringComparison.Ordinal) && jobsSoFar <= chain.Count; current = link.By)
        {
            jobsSoFar++;
        }

        var byTimeLimit = _stoppedAt is { } at && _end is { } end && at >= end - TimeLimitWindow - EndMargin;
        if (WhyNotContinue(outcome, byTimeLimit, _loop.RanOutOfWorkers, jobsSoFar, _settings.MaxJobs) is { } why)
        {
            log($"not continuing in a next job: {why}");
            return null;
        }

        if (!_journal.ClaimSubmission(job, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()))
        {
            log($"not continuing: job {job} already submitted its continuation");
            return null;
        }

        string? next;
        string? error;
        try
        {
            System.IO.Directory.CreateDirectory(_runDir.JobsDirectory);
            var scratch = Path.Combine(_runDir.JobsDirectory, $".sbatch-{Environment.ProcessId}");
            var script = Path.Combine(_runDir.JobsDirectory, $"job-{job}.sbatch");
            if (await SlurmJob.SaveBatchScriptAsync(job, script, scratch).ConfigureAwait(false) is { } saveError)
            {
                if (!File.Exists(_runDir.BatchScript))
                {
                    _journal.RecordSubmission(job, null, saveError);
                    log($"cannot continue: {saveError}");
                    return null;
                }

                script = _runDir.BatchScript; // shoal submit's script is the same one
            }

            (next, error) = await SlurmJob.SubmitAsync(script, CarriedOptions(), job, scratch).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            (next, error) = (null, $"cannot write in {_runDir.JobsDirectory}: {e.Message}");
        }

        _journal.RecordSubmission(job, next, error);
        log(next is not null
            ? $"continuing in job {next} (job {jobsSoFar + 1} of at most {_settings.MaxJobs}; it starts when job {job} has ended)"
            : $"cannot continue: {error}");
        return next;
    }

    /// <summary>What the next job must ask SLURM for that a batch script may not say itself (the user may have given
    /// it on sbatch's command line): the job's first node count, its time limit, partition, account, QOS, name,
    /// CPUs per task and tasks per node, and the working directory.</summary>
    private List<string> CarriedOptions()
    {
        var env = (Func<string, string?>)Environment.GetEnvironmentVariable;
        var options = new List<string> { $"--chdir={(env("SLURM_SUBMIT_DIR") is { Length: > 0 } submitDir ? submitDir : Environment.CurrentDirectory)}" };
        if (_settings.Allocation is { } a)
        {
            options.Add($"--nodes={a.Nodes.Count}");
        }

        if (_limit is { } limit)
        {
            options.Add($"--time={(int)Math.Ceiling(limit.TotalMinutes)}");
        }

        foreach (var (variable, option) in new[]
        {
            ("SLURM_JOB_PARTITION", "--partition"), ("SLURM_JOB_ACCOUNT", "--account"), ("SLURM_JOB_QOS", "--qos"), ("SLURM_JOB_NAME", "--job-name"),
            ("SLURM_CPUS_PER_TASK", "--cpus-per-task"), ("SLURM_NTASKS_PER_NODE", "--ntasks-per-node"),
        })
        {
            if (env(variable) is { Length: > 0 } value)
            {
                options.Add($"{option}={value}");
            }
        }

        return options;
    }

    private static string EndMeta(DateTimeOffset? end) => end is { } e ? e.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture) : "";

    private static async Task<(DateTimeOffset? End, TimeSpan? Limit)> ReadEndAsync(RunSettings settings, RunDirectory runDir)
    {
        if (settings.JobId is not { } job)
        {
            return (settings.JobEnd, null);
        }

        var (end, limit) = await SlurmJob.QueryAsync(job, Path.Combine(runDir.Path, $".squeue-{Environment.ProcessId}")).ConfigureAwait(false);
        return (settings.JobEnd ?? end, limit); // the limit is carried to the next job even when the end came from the environment
    }

    /// <summary>An administrator may extend (or cut) a running job's time limit: ask again every minute.</summary>
    private async Task RefreshEndAsync(CancellationToken cancellationToken)
    {
        try
        {
            await RefreshLoopAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _log?.Invoke($"stopped asking squeue for the job's end: {e.Message}");
        }
    }

    private async Task RefreshLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                await Task.Delay(TimeSpan.FromMinutes(1), cancellationToken).ConfigureAwait(false);
                var (end, _) = await ReadEndAsync(_settings, _runDir).ConfigureAwait(false);
                if (end is not null && end != _end)
                {
                    _end = end;
                    _loop.SetEnd(end);
                    _writer.Enqueue(j => j.SetMeta(new Dictionary<string, string> { ["job.end"] = EndMeta(end) }));
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        _refresh.Dispose();
        _localNode?.Dispose();
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync().ConfigureAwait(false);
        }

        _writer.Dispose();
        _journal.Dispose();
        _runDir.Dispose();
        _stopping.Dispose();
        _hurry.Dispose();
    }

    /// <summary>Refuses a journal made for other tasks: results must never be attributed to the wrong command.
    /// Tasks appended at the end of the file are accepted (the old ones keep their ids and fingerprint).</summary>
    private static void CheckSameTasks(RunJournal journal, TaskList tasks, RunDirectory runDir)
    {
        var stored = journal.GetMeta("tasks.fingerprint");
        var update = new Dictionary<string, string>
        {
            ["tasks.count"] = tasks.Count.ToString(CultureInfo.InvariantCulture),
            ["tasks.fingerprint"] = tasks.Fingerprint(tasks.Count),
            ["tasks.origin"] = tasks.Origin,
        };
        if (stored is null)
        {
            update["created"] = DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture);
            journal.SetMeta(update);
            return;
        }

        var oldCount = int.Parse(journal.GetMeta("tasks.count") ?? "0", CultureInfo.InvariantCulture);
        if (oldCount == tasks.Count && update["tasks.fingerprint"] == stored)
        {
            return;
        }

        if (oldCount < tasks.Count && tasks.Fingerprint(oldCount) == stored)
        {
            journal.SetMeta(update);
            return;
        }

        throw new JournalException(
            $"the tasks of {tasks.Origin} changed since the run in {runDir.Path} began ({oldCount} tasks then, {tasks.Count} now, and not only appended). " +
            "Resuming would attribute results to the wrong commands. Restore the original file, start a new run with --run-dir NEWDIR, " +
            $"or remove {runDir.Path} to start over.");
    }
}
