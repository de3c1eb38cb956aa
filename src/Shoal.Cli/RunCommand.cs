using System.CommandLine;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Shoal.Cluster;
using Shoal.Execution;
using Shoal.Journal;
using Shoal.Running;
using Shoal.Tasks;

namespace Shoal.Cli;

/// <summary><c>shoal run</c>: run a task file (or a sweep) on the local cores; resumes from the run's journal.</summary>
internal static class RunCommand
{
    private static readonly Option<int?> Slots = new("--slots", "-j") { Description = "Tasks to run at once (default: the CPUs this process may use, or SLURM_CPUS_ON_NODE)" };
    private static readonly Option<string?> Gpus = new("--gpus") { Description = "GPU ids to hand out, e.g. 0,1,2,3 (default: from CUDA_VISIBLE_DEVICES, SLURM_STEP_GPUS or SLURM_JOB_GPUS)" };
    private static readonly Option<string?> Shell = new("--shell") { Description = "Shell that runs each command as SHELL -c COMMAND (default /bin/sh; a plain-word command runs without it, see --always-shell)" };
    private static readonly Option<bool> AlwaysShell = new("--always-shell") { Description = "Run every command through the shell, also plain-word ones (by default 'prog arg1 arg2' is started directly, as the shell would)" };
    private static readonly Option<string?> RunDir = new("--run-dir", "-r") { Description = "Where the journal and output go (default: TASKFILE.shoal beside the task file)" };
    private static readonly Option<int> Retries = new("--retries") { Description = "Run a failed task up to N more times", DefaultValueFactory = _ => 0 };
    private static readonly Option<string?> Timeout = new("--timeout") { Description = "Per-task time limit, e.g. 90s, 10m, 1h30m, 01:00:00 (TERM, then KILL after --grace)" };
    private static readonly Option<string> Grace = new("--grace") { Description = "Time between TERM and KILL when a task times out or the run stops", DefaultValueFactory = _ => "3s" };
    private static readonly Option<bool> RetryFailed = new("--retry-failed") { Description = "On resume, run again the tasks that failed before" };
    private static readonly Option<string?> EachLine = new("--each-line") { Description = "One task per line of FILE: the command after -- with {} replaced by the line (shell-quoted)" };
    private static readonly Option<string?> Range = new("--range") { Description = "One task per integer FROM-TO: the command after -- with {} replaced by the number" };
    private static readonly Option<bool> Quiet = new("--quiet", "-q") { Description = "No progress and no summary (errors still go to stderr)" };
    private static readonly Option<bool> Local = new("--local") { Description = "Use only this machine even inside a SLURM allocation" };
    private static readonly Option<string?> EndMargin = new("--end-margin") { Description = "Inside SLURM: start a task only if it is expected to end this long before the job's end (default: grace + 10s + 1% of the time limit, at most 5m more)" };
    private static readonly Option<bool> Continue = new("--continue") { Description = "In a batch job: when the job's time runs out before the run ends, submit the same batch script again to go on (see --max-jobs)" };
    private static readonly Option<bool> KeepNodes = new("--keep-nodes") { Description = "Inside SLURM: keep every node to the end (by default a node with nothing left to run is handed back)" };
    private static readonly Option<int> MaxJobs = new("--max-jobs") { Description = "With --continue: the most jobs the chain may have", DefaultValueFactory = _ => RunSession.DefaultMaxJobs };
    private static readonly Option<string?> NodeSetup = new("--node-setup") { Description = "Run CMD once on each node (this machine, or each node of the allocation) before its first task; a node whose setup fails gets no task (also '#SHOAL node-setup CMD' at the top of the task file)" };
    private static readonly Option<string?> NodeTeardown = new("--node-teardown") { Description = "Run CMD once on each node after its last task: at the end, when the node is handed back, and when the run is stopped (also '#SHOAL node-teardown CMD')" };
    private static readonly Option<string> SetupTimeout = new("--setup-timeout") { Description = "Time limit of each node's setup (it then fails)", DefaultValueFactory = _ => "10m" };
    private static readonly Option<string> TeardownTimeout = new("--teardown-timeout") { Description = "Time limit of each node's teardown", DefaultValueFactory = _ => "2m" };
    private static readonly Option<string> Output = new("--output", "-o") { Description = "Final summary format: text or json", DefaultValueFactory = _ => "text" };
    private static readonly Argument<string[]> Arguments = new("TASKFILE | -- COMMAND") { Description = "A task file ('-' for stdin), or with --each-line/--range the command template", Arity = ArgumentArity.ZeroOrMore };

    public static Command Create()
    {
        var command = new Command("run", "Run every task of a task file on the local cores, starting the next the moment a slot frees; resumes where an earlier run stopped")
        {
            Slots, Gpus, Shell, RunDir, Retries, Timeout, Grace, RetryFailed, EachLine, Range, Quiet, Local, EndMargin, Continue, MaxJobs, KeepNodes,
            NodeSetup, NodeTeardown, SetupTimeout, TeardownTimeout, AlwaysShell, Output, Arguments,
        };
        Output.AcceptOnlyFromAmong("text", "json");
        command.SetAction((parse, cancellationToken) => ExecuteAsync(parse, cancellationToken));
        return command;
    }

    private static async Task<int> ExecuteAsync(ParseResult parse, CancellationToken cancellationToken)
    {
        var args = parse.GetValue(Arguments) ?? [];
        var unknown = parse.Tokens.TakeWhile(t => t.Type != System.CommandLine.Parsing.TokenType.DoubleDash)
            .FirstOrDefault(t => t.Type == System.CommandLine.Parsing.TokenType.Argument && t.Value.Length > 1 && t.Value[0] == '-');
        if (unknown is not null)
        {
            return Cli.Fail($"unknown option {unknown.Value} (a command template goes after --; see shoal run --help)");
        }

        var (tasks, defaultRunDir) = LoadTasks(parse, args);
        Trace("tasks loaded");
        var env = (Func<string, string?>)Environment.GetEnvironmentVariable;

        var slots = parse.GetValue(Slots) ?? LocalMachine.Slots(env);
        if (slots < 1)
        {
            return Cli.Fail($"--slots {slots}: must be at least 1");
        }

        IReadOnlyList<string> gpus;
        try
        {
            gpus = parse.GetValue(Gpus) is { } g ? LocalMachine.ParseGpuList(g) : LocalMachine.Gpus(env);
        }
        catch (FormatException e)
        {
            return Cli.Fail($"--gpus: {e.Message}");
        }

        SlurmAllocation? allocation;
        try
        {
            allocation = parse.GetValue(Local) ? null : SlurmAllocation.FromEnvironment(env);
        }
        catch (FormatException e)
        {
            return Cli.Fail($"{e.Message} (use --local to ignore SLURM)");
        }

        if (allocation is not null && (parse.GetValue(Slots) is not null || parse.GetValue(Gpus) is not null))
        {
            await Console.Error.WriteLineAsync("shoal: note: --slots and --gpus apply to single-machine runs; inside SLURM each node's share of the allocation decides (use --local to run on this machine only)").ConfigureAwait(false);
        }

        var shell = ChildProcess.FindProgram(parse.GetValue(Shell) ?? "/bin/sh");
        if (shell is null)
        {
            return Cli.Fail($"--shell {parse.GetValue(Shell)}: no such executable program");
        }

        var retries = parse.GetValue(Retries);
        if (retries is < 0 or > RunOptions.MaxRetries)
        {
            return Cli.Fail($"--retries {retries}: must be between 0 and {RunOptions.MaxRetries}");
        }

        var maxJobs = parse.GetValue(MaxJobs);
        if (maxJobs < 1)
        {
            return Cli.Fail($"--max-jobs {maxJobs}: must be at least 1");
        }

        var options = new RunOptions
        {
            Retries = retries,
            Timeout = parse.GetValue(Timeout) is { } t ? ParseDuration("--timeout", t) : null,
            Grace = ParseDuration("--grace", parse.GetValue(Grace)!),
            RetryFailed = parse.GetValue(RetryFailed),
            ManageGpus = gpus.Count > 0,
        };
        if (double.TryParse(Environment.GetEnvironmentVariable("SHOAL_SPAWN_GIVE_UP"), System.Globalization.CultureInfo.InvariantCulture, out var giveUp) && giveUp > 0)
        {
            options = options with { SpawnGiveUp = TimeSpan.FromSeconds(giveUp) }; // tests and impatient admins
        }

        var quiet = parse.GetValue(Quiet);
        var json = parse.GetValue(Output) == "json";
        var settings = new RunSettings(tasks, parse.GetValue(RunDir) ?? defaultRunDir, options, shell)
        {
            Allocation = allocation,
            Slots = slots,
            Gpus = gpus,
            Quiet = quiet,
            CommandLine = string.Join(' ', Environment.GetCommandLineArgs().Skip(1)),
            SpawnerThreads = SpawnerThreads(),
            JobId = env("SLURM_JOB_ID") is { Length: > 0 } job ? job : null,
            JobEnd = SlurmJob.EndFromEnvironment(env),
            EndMargin = parse.GetValue(EndMargin) is { } margin ? ParseDuration("--end-margin", margin) : null,
            Continue = parse.GetValue(Continue),
            MaxJobs = maxJobs,
            KeepNodes = parse.GetValue(KeepNodes),
            NodeSteps = StepPlan(parse, tasks, shell, options.Grace),
            DirectExec = parse.GetValue(Shell) is null && !parse.GetValue(AlwaysShell),
        };
        var log = (Action<string>)(message => Console.Error.WriteLine($"shoal: {message}"));
        PoolThreads.Reserve(PoolThreads.ForRun); // before any task can use up the process limit
        await using var session = await RunSession.OpenAsync(settings, log).ConfigureAwait(false);
        Trace("journal checked");

        // Parsing and fingerprinting a big task file leaves garbage; drop it before the long steady state.
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        Trace("loop built");
        if (!quiet)
        {
            var progress = session.Progress;
            var before = progress.AlreadyDone + progress.AlreadyFailed;
            await Console.Error.WriteLineAsync(
                $"shoal: {tasks.Count} tasks from {tasks.Origin}{(before > 0 ? $" ({progress.AlreadyDone} done and {progress.AlreadyFailed} failed before)" : "")}; {session.Describe()}; run dir {session.Directory.Path}{TimeLeft(session)}").ConfigureAwait(false);
        }

        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; session.RequestStop(Native.SIGINT); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; session.RequestStop(Native.SIGTERM); });

        using var governor = new AllocationGovernor();
        RunOutcome outcome;
        using (var display = quiet ? null : ProgressDisplay.Start(session.Progress))
        {
            outcome = await session.RunAsync(log).ConfigureAwait(false); // throws (exit 2, clear message) when the journal could not be written
            display?.Stop();
        }

        if (outcome.SetupFailedEverywhere)
        {
            await Console.Error.WriteLineAsync($"shoal: node setup failed on every node ({outcome.SetupFailures}); no task ran and none is marked failed. The steps: shoal nodes {session.Directory.Path}").ConfigureAwait(false);
        }
        else if (allocation is not null && session.RanOutOfWorkers && !quiet)
        {
            await Console.Error.WriteLineAsync("shoal: every worker was lost before the run ended; run the same command again (in a new allocation) to finish it").ConfigureAwait(false);
        }

        if (outcome.SpawnError is not null)
        {
            await Console.Error.WriteLineAsync($"shoal: error: {outcome.SpawnError}").ConfigureAwait(false);
        }

        if (json)
        {
            Summary.WriteJson(Console.Out, outcome, session.Directory.Path);
        }
        else if (!quiet)
        {
            Summary.WriteText(Console.Error, outcome, session.Directory.Path);
        }

        if (Environment.GetEnvironmentVariable("SHOAL_GC_STATS") is not null)
        {
            // For bench/: how the GC behaved, and this process's peak RSS (VmHWM).
            var hwm = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal))?.Split(':')[1].Trim();
            await Console.Error.WriteLineAsync($"shoal: gc gen0={GC.CollectionCount(0)} gen1={GC.CollectionCount(1)} gen2={GC.CollectionCount(2)} allocated={GC.GetTotalAllocatedBytes() >> 20} MiB, peak RSS {hwm}").ConfigureAwait(false);
        }

        return outcome.ExitCode;
    }

    /// <summary>For shoal submit: checks the task file and the options as the run will (exit 2 on bad input) and
    /// returns the run directory's full path.</summary>
    internal static string CheckForSubmit(ParseResult parse)
    {
        var (_, defaultRunDir) = LoadTasks(parse, parse.GetValue(Arguments) ?? []);
        foreach (var option in new[] { Timeout, EndMargin })
        {
            if (parse.GetValue(option) is { } value)
            {
                ParseDuration(option.Name, value);
            }
        }

        ParseDuration(Grace.Name, parse.GetValue(Grace)!);
        ParseStepTimeout(SetupTimeout, parse);
        ParseStepTimeout(TeardownTimeout, parse);
        CheckStepCommand(NodeSetup, parse);
        CheckStepCommand(NodeTeardown, parse);
        return Path.GetFullPath(parse.GetValue(RunDir) ?? defaultRunDir);
    }

    /// <summary>The node steps: --node-setup/--node-teardown, else the task file's #SHOAL lines; null when none.</summary>
    private static NodeStepPlan? StepPlan(ParseResult parse, TaskList tasks, string shell, TimeSpan grace)
    {
        var setup = CheckStepCommand(NodeSetup, parse) ?? tasks.NodeSetup?.Command;
        var teardown = CheckStepCommand(NodeTeardown, parse) ?? tasks.NodeTeardown?.Command;
        var setupTimeout = ParseStepTimeout(SetupTimeout, parse);
        var teardownTimeout = ParseStepTimeout(TeardownTimeout, parse);
        return setup is null && teardown is null ? null : new NodeStepPlan(shell, setup, teardown, setupTimeout, teardownTimeout, grace);
    }

    private static TimeSpan ParseStepTimeout(Option<string> option, ParseResult parse)
    {
        var value = parse.GetValue(option)!;
        var timeout = ParseDuration(option.Name, value);
        return timeout <= NodeSteps.MaxTimeout ? timeout : throw new TaskInputException($"{option.Name} '{value}' is longer than {Duration.Format(NodeSteps.MaxTimeout)}");
    }

    private static string? CheckStepCommand(Option<string?> option, ParseResult parse) =>
        parse.GetValue(option) is not { } command ? null
        : command.Trim().Length == 0 ? throw new TaskInputException($"{option.Name}: the command is empty")
        : command.Contains('\0', StringComparison.Ordinal) ? throw new TaskInputException($"{option.Name}: the command contains a NUL byte")
        : System.Text.Encoding.UTF8.GetByteCount(command) >= TaskSources.MaxCommandBytes ? throw new TaskInputException($"{option.Name}: the command is over {TaskSources.MaxCommandBytes - 1:N0} bytes long (put long scripts in a file)")
        : command;

    private static string TimeLeft(RunSession session) =>
        session.End is { } end
            ? $"; job ends in {Duration.Format(end - DateTimeOffset.UtcNow)} (at {end.ToLocalTime():HH:mm:ss}), no task starts that would end within {Duration.Format(session.EndMargin)} of it"
            : "";

    private static void Trace(string what)
    {
        if (Environment.GetEnvironmentVariable("SHOAL_GC_STATS") is not null)
        {
            Console.Error.WriteLine($"shoal: {what}: allocated {GC.GetTotalAllocatedBytes() >> 20} MiB, heap {GC.GetTotalMemory(false) >> 20} MiB");
        }
    }

    private static int SpawnerThreads() =>
        int.TryParse(Environment.GetEnvironmentVariable("SHOAL_SPAWNERS"), out var n) && n > 0 ? n : Math.Clamp(Environment.ProcessorCount / 2, 1, 8);

    private static TimeSpan ParseDuration(string option, string value) =>
        Duration.TryParse(value, out var d) && d > TimeSpan.Zero ? d : throw new TaskInputException($"{option} '{value}' is not a positive duration (e.g. 90s, 10m, 1h30m, 01:30:00)");

    private static (TaskList Tasks, string RunDir) LoadTasks(ParseResult parse, string[] args)
    {
        var eachLine = parse.GetValue(EachLine);
        var range = parse.GetValue(Range);
        if (eachLine is not null && range is not null)
        {
            throw new TaskInputException("--each-line and --range cannot be used together");
        }

        if (eachLine is not null || range is not null)
        {
            if (args.Length == 0)
            {
                throw new TaskInputException($"{(range is not null ? "--range" : "--each-line")} needs a command after --, e.g. shoal run --range 1-100 -- ./simulate {{}}");
            }

            var template = string.Join(' ', args);
            if (range is not null)
            {
                var list = TaskSources.FromRange(range, template);
                return (list, $"shoal-range-{ShortHash(range + "\n" + template)}.shoal");
            }

            var tasks = TaskSources.FromEachLine(ReadInput(eachLine!), eachLine == "-" ? "stdin" : eachLine!, template);
            return (tasks, eachLine == "-" ? $"shoal-stdin-{ShortHash(tasks.Fingerprint(tasks.Count))}.shoal" : RunDirectory.DefaultFor(eachLine!));
        }

        if (args.Length != 1)
        {
            throw new TaskInputException(args.Length == 0
                ? "no task file; usage: shoal run TASKFILE, or shoal run --range 1-100 -- CMD {}"
                : $"expected one task file, got {args.Length} arguments ({string.Join(' ', args)}); use --each-line or --range for a command template");
        }

        var path = args[0];
        var fileTasks = TaskSources.FromTaskFile(ReadInput(path), path == "-" ? "stdin" : path);
        return (fileTasks, path == "-" ? $"shoal-stdin-{ShortHash(fileTasks.Fingerprint(fileTasks.Count))}.shoal" : RunDirectory.DefaultFor(path));
    }

    private static string ShortHash(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..10];

    private static byte[] ReadInput(string path)
    {
        try
        {
            if (path == "-")
            {
                using var stdin = Console.OpenStandardInput();
                using var buffer = new MemoryStream();
                stdin.CopyTo(buffer);
                return buffer.ToArray();
            }

            if (Directory.Exists(path))
            {
                throw new TaskInputException($"cannot read {path}: it is a directory, not a task file");
            }

            return File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TaskInputException($"cannot read {path}: {Cli.Describe(e)}", e);
        }
    }
}
