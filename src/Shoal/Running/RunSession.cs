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
    public static RunSession Open(RunSettings settings, Action<string> log)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(log);
        var tasks = settings.Tasks;
        var allocation = settings.Allocation;
        if (RunState.FirstTooLarge(tasks, PlannedWorkers(settings)) is { } big)
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
            runDir.Acquire();
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

            var options = settings.Options with { Session = session, ManageGpus = allocation is null ? settings.Gpus.Count > 0 : allocation.GpusPerNode > 0 };
            writer = new JournalWriter(journal);
            var loop = new RunLoop(tasks, options, journal, writer, TimeProvider.System);
            SlurmLeader? cluster = null;
            if (allocation is null)
            {
                var launcherOptions = new ProcessLauncherOptions(
                    settings.Shell,
                    runDir.LogDirectory(session),
                    settings.Slots,
                    [new("SHOAL_RUN_DIR", runDir.Path)],
                    "w0-",
                    settings.SpawnerThreads);
                loop.AddWorker(PlannedWorkers(settings)[0], new ProcessLauncher(launcherOptions, loop.ExitSink));
                loop.ExpectNoMoreWorkers();
            }
            else
            {
                cluster = new SlurmLeader(allocation, loop, writer, runDir, session, settings.Shell, settings.Quiet);
            }

            return new RunSession(settings, runDir, journal, writer, loop, cluster, session);
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

    /// <summary>Stop (any thread): see <see cref="RunLoop.RequestStop"/>.</summary>
    public void RequestStop(int signal) => _loop.RequestStop(signal);

    /// <summary>Runs to the end: starts the workers, runs the loop, waits for the workers' step, closes the journal
    /// (throws <see cref="JournalException"/> when it could not be written) and ends the session.</summary>
    public async Task<RunOutcome> RunAsync()
    {
        _cluster?.Start();
        var outcome = await _loop.RunAsync(CancellationToken.None).ConfigureAwait(false);
        if (_cluster is not null)
        {
            await _cluster.FinishAsync().ConfigureAwait(false);
        }

        _writer.Complete();
        _journal.EndSession(_session, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), outcome.StopSignal != 0 ? $"stopped by signal {outcome.StopSignal}" : $"finished, exit {outcome.ExitCode}");
        return outcome;
    }

    public async ValueTask DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync().ConfigureAwait(false);
        }

        _writer.Dispose();
        _journal.Dispose();
        _runDir.Dispose();
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
