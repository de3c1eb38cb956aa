using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Shoal.Journal;
using Shoal.Tests.Support;

namespace Shoal.Tests.EndToEnd;

/// <summary>
/// Issue 11 in local mode, with the real binary and real processes: per-node setup and teardown commands (from the
/// command line and from <c>#SHOAL node-setup</c> lines), their environment, logs and records, teardown on SIGTERM,
/// a failing setup; <c>#SHOAL barrier</c> (also across kill -9 and resume) and <c>stop-on-failure</c>; bad input.
/// Tasks and steps write their own timestamps (<c>date +%s%N</c>); the tests assert only on order, never on speed.
/// </summary>
public sealed class NodeStepsAndBarrierTests : IDisposable
{
    /// <summary>A setup or teardown command: "B ns STEP" and "E ns STEP" into steps around its work, its environment
    /// as one line of env, and one line on stdout and one on stderr (for the step's log).</summary>
    private const string StepCommand =
        "echo \"B $(date +%s%N) $SHOAL_STEP\" >> steps; " +
        "echo \"$SHOAL_STEP|$SHOAL_NODE|$SHOAL_NODE_SLOTS|$SHOAL_NODE_GPUS|$SHOAL_SESSION|$SHOAL_RUN_DIR\" >> env; " +
        "sleep 0.2; echo out-$SHOAL_STEP; echo err-$SHOAL_STEP >&2; " +
        "echo \"E $(date +%s%N) $SHOAL_STEP\" >> steps";

    private readonly TempDir _dir = new();

    /// <summary>A task that writes "S ID ns" at its start and "E ID ns" at its end into marks, and its SHOAL_NODE.</summary>
    private static string Marked(string body) =>
        $"echo \"S $SHOAL_TASK_ID $(date +%s%N)\" >> marks; echo \"$SHOAL_NODE\" > node.$SHOAL_TASK_ID; {body}; echo \"E $SHOAL_TASK_ID $(date +%s%N)\" >> marks";

    private List<(char Kind, int Id, long Ns)> Marks()
    {
        var path = _dir.File("marks");
        return !File.Exists(path)
            ? []
            : [.. File.ReadAllLines(path).Where(l => l.Length > 0).Select(l => l.Split(' ')).Select(f => (f[0][0], int.Parse(f[1], CultureInfo.InvariantCulture), long.Parse(f[2], CultureInfo.InvariantCulture)))];
    }

    private List<(char Kind, long Ns, string Step)> Steps()
    {
        var path = _dir.File("steps");
        return !File.Exists(path)
            ? []
            : [.. File.ReadAllLines(path).Where(l => l.Length > 0).Select(l => l.Split(' ')).Select(f => (f[0][0], long.Parse(f[1], CultureInfo.InvariantCulture), f.Length > 2 ? f[2] : ""))];
    }

    private static long StepAt(List<(char Kind, long Ns, string Step)> steps, char kind, string step) =>
        Assert.Single(steps, s => s.Kind == kind && s.Step == step).Ns;

    private static string Lines(IEnumerable<(char Kind, long Ns, string Step)> steps) => string.Join("; ", steps.Select(s => $"{s.Kind} {s.Ns} {s.Step}"));

    /// <summary>The checks common to a run with setup and teardown from the command line or the file: each ran once,
    /// setup ended before any task started, teardown started after every task ended; their environment, logs, and
    /// what <c>shoal nodes</c> and <c>shoal status</c> say.</summary>
    private async Task AssertStepsAroundTasks(IReadOnlyCollection<int> taskIds, int slots)
    {
        var steps = Steps();
        Assert.True(steps.Count == 4, "steps: " + Lines(steps));
        var setupEnd = StepAt(steps, 'E', "setup");
        var teardownBegin = StepAt(steps, 'B', "teardown");
        Assert.True(StepAt(steps, 'B', "setup") < setupEnd);
        Assert.True(teardownBegin < StepAt(steps, 'E', "teardown"));

        var marks = Marks();
        Assert.Equal(taskIds.Order(), marks.Where(m => m.Kind == 'S').Select(m => m.Id).Order());
        Assert.Equal(taskIds.Order(), marks.Where(m => m.Kind == 'E').Select(m => m.Id).Order());
        Assert.All(marks.Where(m => m.Kind == 'S'), m => Assert.True(setupEnd < m.Ns, $"task {m.Id} started before the node setup ended"));
        Assert.All(marks.Where(m => m.Kind == 'E'), m => Assert.True(m.Ns < teardownBegin, $"task {m.Id} ended after the node teardown began"));

        var runDir = _dir.File("tasks.txt.shoal");
        var host = Environment.MachineName;
        var env = File.ReadAllLines(_dir.File("env")).Select(l => l.Split('|')).ToDictionary(f => f[0], f => f);
        Assert.Equal(["setup", "teardown"], env.Keys.Order());
        foreach (var step in new[] { "setup", "teardown" })
        {
            var e = env[step];
            Assert.Equal(host, e[1]); // SHOAL_NODE
            Assert.Equal(slots.ToString(CultureInfo.InvariantCulture), e[2]); // SHOAL_NODE_SLOTS
            Assert.Equal("", e[3]); // SHOAL_NODE_GPUS: no GPUs
            Assert.Equal("1", e[4]); // SHOAL_SESSION
            Assert.Equal(runDir, e[5]); // SHOAL_RUN_DIR, absolute
        }

        Assert.All(taskIds, id => Assert.Equal(host, File.ReadAllText(_dir.File($"node.{id}")).Trim())); // tasks get SHOAL_NODE too

        var setupLog = File.ReadAllText(Path.Combine(runDir, "out", "s1", "w0-setup.log"));
        Assert.Contains("out-setup", setupLog, StringComparison.Ordinal);
        Assert.Contains("err-setup", setupLog, StringComparison.Ordinal);
        var teardownLog = File.ReadAllText(Path.Combine(runDir, "out", "s1", "w0-teardown.log"));
        Assert.Contains("out-teardown", teardownLog, StringComparison.Ordinal);
        Assert.Contains("err-teardown", teardownLog, StringComparison.Ordinal);

        var nodes = await ShoalBinary.RunAsync(_dir.Path, "nodes", runDir);
        Assert.True(nodes.ExitCode == 0, nodes.Stderr);
        var row = Assert.Single(NodeRows(nodes.Stdout));
        Assert.Contains(host, row, StringComparison.Ordinal);
        Assert.Equal(2, Regex.Count(row, @"(^|\s)ok \d"));

        var status = await ShoalBinary.RunAsync(_dir.Path, "status", runDir);
        Assert.True(status.ExitCode == 0, status.Stderr);
        Assert.Contains("node setup: 1 ok", StatusLine(status.Stdout, "node setup:"), StringComparison.Ordinal);
        Assert.Contains("node teardown: 1 ok", StatusLine(status.Stdout, "node teardown:"), StringComparison.Ordinal);

        var json = await ShoalBinary.RunAsync(_dir.Path, "status", runDir, "-o", "json");
        Assert.True(json.ExitCode == 0, json.Stderr);
        using var doc = JsonDocument.Parse(json.Stdout);
        var recorded = doc.RootElement.GetProperty("node_steps").EnumerateArray().ToList();
        Assert.Equal(["setup", "teardown"], recorded.Select(s => s.GetProperty("step").GetString()).Order());
        foreach (var s in recorded)
        {
            Assert.Equal(1, s.GetProperty("session").GetInt32());
            Assert.Equal(0, s.GetProperty("worker").GetInt32());
            Assert.Equal(host, s.GetProperty("host").GetString());
            Assert.True(s.GetProperty("ok").GetBoolean());
            Assert.Equal(0, s.GetProperty("exit_code").GetInt32());
            Assert.False(s.GetProperty("timed_out").GetBoolean());
            Assert.EndsWith($"w0-{s.GetProperty("step").GetString()}.log", s.GetProperty("log").GetString(), StringComparison.Ordinal);
        }
    }

    /// <summary>The rows of <c>shoal nodes</c>' table: the lines after its header (which names SETUP) that start
    /// with a session number (notes such as a failed step's log path may follow the table).</summary>
    private static List<string> NodeRows(string stdout)
    {
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        var header = lines.FindIndex(l => l.Contains("SETUP", StringComparison.Ordinal) && l.Contains("TEARDOWN", StringComparison.Ordinal));
        Assert.True(header >= 0, "no header in shoal nodes: " + stdout);
        return [.. lines.Skip(header + 1).Where(l => Regex.IsMatch(l, @"^\d+\s"))];
    }

    private static string StatusLine(string stdout, string start) =>
        Assert.Single(stdout.Split('\n').Select(l => l.Trim()), l => l.StartsWith(start, StringComparison.Ordinal));

    [Fact]
    public async Task NodeSetupAndTeardown_FromTheCommandLine_RunOnceAroundAllTasks_WithTheirEnvironmentAndLogs()
    {
        _dir.Write("tasks.txt", string.Concat(Enumerable.Range(0, 6).Select(i => Marked($"sleep 0.{i % 3 + 1}") + "\n")));

        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "3", "--node-setup", StepCommand, "--node-teardown", StepCommand);

        Assert.True(r.ExitCode == 0, r.Stderr);
        await AssertStepsAroundTasks([1, 2, 3, 4, 5, 6], 3);
    }

    [Fact]
    public async Task NodeSetupAndTeardown_FromTheTaskFile_RunOnceAroundAllTasks_TaskIdsStayLineNumbers()
    {
        _dir.Write("tasks.txt",
            $"#SHOAL node-setup {StepCommand}\n" +
            $"#SHOAL node-teardown {StepCommand}\n" +
            string.Concat(Enumerable.Range(0, 5).Select(i => Marked($"sleep 0.{i % 3 + 1}") + "\n")));

        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "2");

        Assert.True(r.ExitCode == 0, r.Stderr);
        await AssertStepsAroundTasks([3, 4, 5, 6, 7], 2);
    }

    [Fact]
    public async Task NodeSetupAndTeardown_OnTheCommandLine_WinOverTheTaskFiles()
    {
        _dir.Write("tasks.txt",
            "#SHOAL node-setup echo file-setup >> which\n" +
            "#SHOAL node-teardown echo file-teardown >> which\n" +
            "echo task >> which\n");

        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--node-setup", "echo cli-setup >> which", "--node-teardown", "echo cli-teardown >> which");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(["cli-setup", "task", "cli-teardown"], File.ReadAllLines(_dir.File("which")));
    }

    [Fact]
    public async Task SigTerm_StopsTheTasks_ThenRunsTheTeardownOnce_Exits143()
    {
        // Each task records its pid (the shell's, which exec turns into sleep's) and its start, then sleeps.
        _dir.Write("tasks.txt", string.Concat(Enumerable.Range(0, 3).Select(_ =>
            "echo $$ > pid.$SHOAL_TASK_ID; echo \"S $SHOAL_TASK_ID $(date +%s%N)\" >> marks; exec sleep 30\n")));
        // The teardown records which of those pids still run (a zombie counts as ended) when it starts.
        const string teardown =
            "echo \"B $(date +%s%N) $SHOAL_STEP\" >> steps; " +
            "for f in pid.*; do p=$(cat $f); s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null); [ -n \"$s\" ] && [ \"$s\" != Z ] && echo $p; done > alive-at-teardown; " +
            "echo \"E $(date +%s%N) $SHOAL_STEP\" >> steps";
        var pids = new List<int>();
        using var p = ShoalBinary.Start(_dir.Path, ["run", "tasks.txt", "--slots", "3", "--grace", "1s", "--node-setup", StepCommand, "--node-teardown", teardown]);
        try
        {
            var stderr = p.StandardError.ReadToEndAsync();
            var stdout = p.StandardOutput.ReadToEndAsync();
            await Eventually.True(() => Marks().Count(m => m.Kind == 'S') == 3, "all three tasks running");
            pids.AddRange(Enumerable.Range(1, 3).Select(id => int.Parse(File.ReadAllText(_dir.File($"pid.{id}")).Trim(), CultureInfo.InvariantCulture)));
            Assert.All(pids, pid => Assert.True(Processes.Alive(pid)));
            var signalNs = (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;
            Assert.Equal(0, Shoal.Execution.Native.Kill(p.Id, Shoal.Execution.Native.SIGTERM));
            using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
            {
                await p.WaitForExitAsync(timeout.Token);
            }

            await stdout;
            Assert.True(p.ExitCode == 143, await stderr);

            var steps = Steps();
            Assert.True(steps.Count == 4, "steps: " + Lines(steps));
            var setupEnd = StepAt(steps, 'E', "setup");
            var teardownBegin = StepAt(steps, 'B', "teardown");
            Assert.All(Marks(), m => Assert.True(setupEnd < m.Ns, $"task {m.Id} started before the node setup ended"));
            Assert.All(Marks(), m => Assert.True(m.Ns < teardownBegin, $"task {m.Id} started after the node teardown began"));
            Assert.True(signalNs < teardownBegin, "the teardown began before shoal was told to stop");
            Assert.Equal("", File.ReadAllText(_dir.File("alive-at-teardown")).Trim()); // the tasks had ended when it began
            Assert.All(pids, pid => Assert.False(Processes.Alive(pid), $"task process {pid} (sleep 30) is left"));
            Assert.True(File.Exists(_dir.File("tasks.txt.shoal/out/s1/w0-teardown.log")), "no teardown log");

            using var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true);
            Assert.Equal(3, journal.LatestAttempts([AttemptState.Interrupted]).Count);
        }
        finally
        {
            if (!p.HasExited)
            {
                p.Kill();
            }

            foreach (var pid in pids.Where(Processes.Alive))
            {
                Shoal.Execution.Native.Kill(pid, 9);
            }
        }
    }

    [Fact]
    public async Task NodeSetupFails_NoTaskRunsOrFails_TeardownStillRuns_ResumeWithAFixedSetupRunsEverything()
    {
        _dir.Write("tasks.txt", "touch ran.$SHOAL_TASK_ID\ntouch ran.$SHOAL_TASK_ID\ntouch ran.$SHOAL_TASK_ID\n");
        const string teardown = "echo $SHOAL_STEP >> teardown.ran";
        var runDir = _dir.File("tasks.txt.shoal");

        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "2", "--node-setup", "echo broken >&2; exit 3", "--node-teardown", teardown);

        Assert.True(r.ExitCode == 1, r.Stderr);
        Assert.Contains("node setup failed on " + Environment.MachineName, r.Stderr, StringComparison.Ordinal);
        Assert.Contains("node setup failed on every node", r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(_dir.Path, "ran.*"));
        Assert.Equal(["teardown"], File.ReadAllLines(_dir.File("teardown.ran"))); // teardown runs where setup ran
        Assert.Contains("broken", File.ReadAllText(Path.Combine(runDir, "out", "s1", "w0-setup.log")), StringComparison.Ordinal);

        var failed = await ShoalBinary.RunAsync(_dir.Path, "list", "--state", "failed", "-r", runDir, "-o", "json");
        Assert.True(failed.ExitCode == 0, failed.Stderr);
        using (var doc = JsonDocument.Parse(failed.Stdout))
        {
            Assert.Equal(0, doc.RootElement.GetArrayLength());
        }

        using (var journal = RunJournal.Open(Path.Combine(runDir, "journal.db"), create: false, readOnly: true))
        {
            Assert.Empty(journal.AllAttempts()); // not run, not failed
        }

        var status = await ShoalBinary.RunAsync(_dir.Path, "status", runDir);
        Assert.True(status.ExitCode == 0, status.Stderr);
        var setupLine = StatusLine(status.Stdout, "node setup:");
        Assert.Contains("1 failed", setupLine, StringComparison.Ordinal);
        Assert.Contains("exit 3", setupLine, StringComparison.Ordinal);

        var nodes = await ShoalBinary.RunAsync(_dir.Path, "nodes", runDir);
        Assert.True(nodes.ExitCode == 0, nodes.Stderr);
        var row = Assert.Single(NodeRows(nodes.Stdout));
        Assert.Matches(@"exit 3 \d", row);
        Assert.Matches(@"(^|\s)ok \d", row); // the teardown

        var resumed = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "2", "--node-setup", "echo fixed", "--node-teardown", teardown);

        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        Assert.Equal(["ran.1", "ran.2", "ran.3"], Directory.GetFiles(_dir.Path, "ran.*").Select(f => Path.GetFileName(f)).Order());
        Assert.Equal(["teardown", "teardown"], File.ReadAllLines(_dir.File("teardown.ran")));
        Assert.Contains("fixed", File.ReadAllText(Path.Combine(runDir, "out", "s2", "w0-setup.log")), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Barriers_EveryTaskBelowStartsAfterEveryTaskAboveEnded()
    {
        var phases = new List<List<int>>();
        var lines = new List<string> { "# three phases" };
        void Phase(params string[] sleeps)
        {
            var ids = new List<int>();
            foreach (var s in sleeps)
            {
                lines.Add(Marked($"sleep {s}"));
                ids.Add(lines.Count);
            }

            phases.Add(ids);
        }

        Phase("0.2", "0.1", "0.3", "0.05", "0.15", "0.1");
        lines.Add("#SHOAL barrier");
        Phase("0.1", "0.25");
        lines.Add("");
        Phase("0.05");
        lines.Add("#SHOAL barrier");
        Phase("0.1");
        lines.Add("#SHOAL cpus=2");
        Phase("0.2", "0.05");
        var barrierTwo = new List<int>(phases[1].Concat(phases[2])); // the blank line is no barrier
        phases = [phases[0], barrierTwo, [.. phases[3], .. phases[4]]];
        _dir.Write("tasks.txt", string.Join('\n', lines) + "\n");

        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "4");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal([2, 3, 4, 5, 6, 7], phases[0]);
        Assert.Equal([9, 10, 12], phases[1]);
        Assert.Equal([14, 16, 17], phases[2]);
        var marks = Marks();
        var all = phases.SelectMany(x => x).Order().ToList();
        Assert.Equal(all, marks.Where(m => m.Kind == 'S').Select(m => m.Id).Order());
        Assert.Equal(all, marks.Where(m => m.Kind == 'E').Select(m => m.Id).Order());
        for (var barrier = 1; barrier < phases.Count; barrier++)
        {
            var above = phases.Take(barrier).SelectMany(x => x).ToHashSet();
            var below = phases.Skip(barrier).SelectMany(x => x).ToHashSet();
            var lastEnd = marks.Where(m => m.Kind == 'E' && above.Contains(m.Id)).Max(m => m.Ns);
            Assert.All(marks.Where(m => m.Kind == 'S' && below.Contains(m.Id)), m => Assert.True(lastEnd < m.Ns, $"task {m.Id} started before every task above barrier {barrier} ended"));
        }

        var list = await ShoalBinary.RunAsync(_dir.Path, "list", "-r", _dir.File("tasks.txt.shoal"), "-o", "json");
        Assert.True(list.ExitCode == 0, list.Stderr);
        using var doc = JsonDocument.Parse(list.Stdout);
        Assert.Equal(all, doc.RootElement.EnumerateArray().Select(a => a.GetProperty("id").GetInt32()).Order());
    }

    [Fact]
    public async Task Barrier_HoldsAcrossKillNineAndResume_EveryTaskAboveSucceedsOnce()
    {
        // Lines 1-8: phase 1; line 9: the barrier; lines 10-13: phase 2.
        _dir.Write("tasks.txt",
            string.Concat(Enumerable.Range(0, 8).Select(_ => Marked("sleep 0.6") + "\n")) +
            "#SHOAL barrier\n" +
            string.Concat(Enumerable.Range(0, 4).Select(_ => Marked("sleep 0.05") + "\n")));
        int[] phaseOne = [1, 2, 3, 4, 5, 6, 7, 8];
        int[] phaseTwo = [10, 11, 12, 13];

        using (var p = ShoalBinary.Start(_dir.Path, ["run", "tasks.txt", "--slots", "2", "-q"]))
        {
            await Eventually.True(() => Marks().Count(m => m.Kind == 'E') >= 2, "two tasks of phase 1 ended");
            await Task.Delay(150); // their ends are committed; the next two are still running
            p.Kill();
            await p.WaitForExitAsync();
            Assert.Equal(137, p.ExitCode);
        }

        Assert.DoesNotContain(Marks(), m => phaseTwo.Contains(m.Id)); // phase 1 had not ended
        HashSet<int> recorded;
        using (var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true))
        {
            recorded = [.. journal.LatestAttempts([AttemptState.Succeeded]).Select(a => a.TaskId)];
        }

        Assert.NotEmpty(recorded);
        Assert.True(recorded.Count < phaseOne.Length, "phase 1 was over before the kill");

        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "2");

        Assert.True(r.ExitCode == 0, r.Stderr);
        var marks = Marks();
        var starts = marks.Where(m => m.Kind == 'S').GroupBy(m => m.Id).ToDictionary(g => g.Key, g => g.Count());
        var ends = marks.Where(m => m.Kind == 'E').GroupBy(m => m.Id).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(phaseOne.Concat(phaseTwo), starts.Keys.Order());
        Assert.Equal(phaseOne.Concat(phaseTwo), ends.Keys.Order());
        Assert.All(recorded, id => Assert.Equal(1, starts[id])); // recorded as succeeded: never ran again
        Assert.All(phaseTwo, id => Assert.Equal(1, starts[id]));
        var lastEndAbove = marks.Where(m => m.Kind == 'E' && phaseOne.Contains(m.Id)).Max(m => m.Ns);
        Assert.All(marks.Where(m => m.Kind == 'S' && phaseTwo.Contains(m.Id)), m => Assert.True(lastEndAbove < m.Ns, $"task {m.Id} started before every task above the barrier ended"));

        using (var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true))
        {
            var succeeded = journal.AllAttempts().Where(a => a.State == AttemptState.Succeeded).GroupBy(a => a.TaskId).ToList();
            Assert.Equal(phaseOne.Concat(phaseTwo), succeeded.Select(g => g.Key).Order());
            Assert.All(succeeded, g => Assert.Single(g));
        }
    }

    [Fact]
    public async Task BarrierStopOnFailure_AFailureAbove_StopsTheRun_NothingBelowStarts_AlsoOnResume()
    {
        // Line 2 fails until the file "fixed" exists; line 4 is the barrier.
        _dir.Write("tasks.txt",
            "touch ran.$SHOAL_TASK_ID\n" +
            "[ -f fixed ] && touch ran.$SHOAL_TASK_ID\n" +
            "touch ran.$SHOAL_TASK_ID\n" +
            "#SHOAL barrier stop-on-failure\n" +
            "touch ran.$SHOAL_TASK_ID\n" +
            "touch ran.$SHOAL_TASK_ID\n");
        const string stopped = "stopped at the barrier on line 4 (stop-on-failure): 1 task(s) above it failed";
        string[] Ran() => [.. Directory.GetFiles(_dir.Path, "ran.*").Select(f => Path.GetFileName(f)).Order()];

        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "2");

        Assert.True(r.ExitCode == 1, r.Stderr);
        Assert.Contains("stop-on-failure", r.Stderr, StringComparison.Ordinal);
        Assert.Contains(stopped, r.Stderr, StringComparison.Ordinal);
        Assert.Equal(["ran.1", "ran.3"], Ran());

        // Resume without --retry-failed: the failure recorded earlier still stops the run at the barrier.
        var again = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "2");
        Assert.True(again.ExitCode == 1, again.Stderr);
        Assert.Contains(stopped, again.Stderr, StringComparison.Ordinal);
        Assert.Equal(["ran.1", "ran.3"], Ran());

        File.WriteAllText(_dir.File("fixed"), "");
        var retried = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "2", "--retry-failed");
        Assert.True(retried.ExitCode == 0, retried.Stderr);
        Assert.Equal(["ran.1", "ran.2", "ran.3", "ran.5", "ran.6"], Ran());
    }

    [Fact]
    public async Task PlainBarrier_AFailureAbove_TheTasksBelowStillRunAfterIt_Exit1()
    {
        // Line 1 fails; line 3 is the barrier; lines 4 and 5 run after both tasks above ended.
        _dir.Write("tasks.txt",
            Marked("sleep 0.1") + "; exit 1\n" +
            Marked("sleep 0.2") + "\n" +
            "#SHOAL barrier\n" +
            Marked("true") + "\n" +
            Marked("true") + "\n");

        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "4");

        Assert.True(r.ExitCode == 1, r.Stderr);
        Assert.DoesNotContain("stop-on-failure", r.Stderr, StringComparison.Ordinal);
        var marks = Marks();
        Assert.Equal([1, 2, 4, 5], marks.Where(m => m.Kind == 'S').Select(m => m.Id).Order());
        Assert.Equal([1, 2, 4, 5], marks.Where(m => m.Kind == 'E').Select(m => m.Id).Order()); // 1 fails after its end mark
        var lastEndAbove = marks.Where(m => m.Kind == 'E' && m.Id < 3).Max(m => m.Ns);
        Assert.All(marks.Where(m => m.Kind == 'S' && m.Id > 3), m => Assert.True(lastEndAbove < m.Ns, $"task {m.Id} started before the tasks above the barrier ended"));

        using var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true);
        Assert.Equal(AttemptState.Failed, Assert.Single(journal.Attempts(1)).State);
        int[] succeeded = [2, 4, 5];
        Assert.All(succeeded, id => Assert.Equal(AttemptState.Succeeded, Assert.Single(journal.Attempts(id)).State));
    }

    private async Task<string> ExpectExit2(params string[] args)
    {
        var r = await ShoalBinary.RunAsync(_dir.Path, args);
        Assert.True(r.ExitCode == 2, $"exit {r.ExitCode}: {r.Stderr}");
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", r.Stderr, StringComparison.Ordinal);
        return r.Stderr;
    }

    private async Task<string> ExpectBadFile(string content)
    {
        _dir.Write("tasks.txt", content);
        var stderr = await ExpectExit2("run", "tasks.txt", "--node-teardown", "touch teardown.ran");
        Assert.False(Directory.Exists(_dir.File("tasks.txt.shoal")), "a run directory was made for a bad task file");
        Assert.Empty(Directory.GetFiles(_dir.Path, "ran.*"));
        Assert.False(File.Exists(_dir.File("teardown.ran")), "the teardown ran for a bad task file");
        return stderr;
    }

    [Fact]
    public async Task BadInput_UnknownBarrierOption()
    {
        var stderr = await ExpectBadFile("touch ran.1\n#SHOAL barrier foo\ntouch ran.3\n");
        Assert.Contains("tasks.txt:2: ", stderr, StringComparison.Ordinal);
        Assert.Contains("unknown barrier option 'foo' (known: stop-on-failure)", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BadInput_NodeSetupWithoutACommand()
    {
        var stderr = await ExpectBadFile("#SHOAL node-setup\ntouch ran.2\n");
        Assert.Contains("tasks.txt:1: ", stderr, StringComparison.Ordinal);
        Assert.Contains("#SHOAL node-setup needs a command", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BadInput_NodeSetupAfterTheFirstTask()
    {
        var stderr = await ExpectBadFile("touch ran.1\n#SHOAL node-setup echo late\ntouch ran.3\n");
        Assert.Contains("tasks.txt:2: ", stderr, StringComparison.Ordinal);
        Assert.Contains("must come before the first task", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BadInput_SecondNodeSetup_NamesTheFirstsLine()
    {
        var stderr = await ExpectBadFile("# setup\n#SHOAL node-setup echo one\n#SHOAL node-setup echo two\ntouch ran.4\n");
        Assert.Matches(@"tasks\.txt:3: .*\b2\b", stderr);
    }

    [Fact]
    public async Task BadInput_ResourceDirectiveFollowedByABarrier()
    {
        var stderr = await ExpectBadFile("touch ran.1\n#SHOAL cpus=2\n#SHOAL barrier\ntouch ran.4\n");
        Assert.Matches(@"tasks\.txt:[23]: ", stderr);
    }

    [Fact]
    public async Task BadInput_NodeStepOptionsWithoutAValue()
    {
        _dir.Write("tasks.txt", "touch ran.1\n");
        Assert.Contains("--node-setup", await ExpectExit2("run", "tasks.txt", "--node-setup"), StringComparison.Ordinal);
        Assert.Contains("--node-teardown", await ExpectExit2("run", "tasks.txt", "--node-teardown"), StringComparison.Ordinal);
        Assert.False(File.Exists(_dir.File("ran.1")));
    }

    [Fact]
    public async Task KillNineDuringTheSetup_TheResumeEndsTheOldSetupBeforeItsOwn_NeverTwoAtOnce()
    {
        // The kernel drops a killed shoal's node lock, not its setup (a process group of its own): the resume must
        // end that setup before starting its own.
        const string setup = "echo \"B $SHOAL_SESSION $(date +%s%N)\" >> steps; sleep 6.0123; echo \"E $SHOAL_SESSION $(date +%s%N)\" >> steps";
        _dir.Write("tasks.txt", "touch ran.1\n");
        using (var p = ShoalBinary.Start(_dir.Path, ["run", "tasks.txt", "--node-setup", setup, "-q"]))
        {
            await Eventually.True(() => File.Exists(_dir.File("steps")), "the first setup began");
            p.Kill();
            await p.WaitForExitAsync();
        }

        Assert.True(OldSetupRuns(), "the killed shoal's setup still runs");
        var r = await ShoalBinary.RunAsync(_dir.Path, ["run", "tasks.txt", "--node-setup", setup.Replace("sleep 6.0123", "sleep 0.1", StringComparison.Ordinal)], null, null);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.False(OldSetupRuns(), "the resume left the old setup running");
        Assert.Contains("that node steps of an earlier, killed session left running here", r.Stderr, StringComparison.Ordinal);
        await Task.Delay(500);
        var lines = File.ReadAllLines(_dir.File("steps"));
        Assert.Equal(["B 1", "B 2", "E 2"], lines.Select(l => string.Join(' ', l.Split(' ').Take(2))));
        Assert.True(File.Exists(_dir.File("ran.1")));
    }

    private static bool OldSetupRuns() =>
        Directory.GetDirectories("/proc").Any(d =>
        {
            try
            {
                return File.ReadAllText(Path.Combine(d, "cmdline")).Contains("6.0123", StringComparison.Ordinal) && !File.ReadAllText(Path.Combine(d, "stat")).Contains(") Z", StringComparison.Ordinal);
            }
            catch (IOException)
            {
                return false;
            }
            catch (UnauthorizedAccessException)
            {
                return false;
            }
        });

    [Fact]
    public async Task BadInput_StepTimeoutTooLong_OrStepCommandTooLong()
    {
        _dir.Write("tasks.txt", "touch ran.1\n");
        Assert.Contains("--setup-timeout '2000h' is longer than", await ExpectExit2("run", "tasks.txt", "--node-setup", "true", "--setup-timeout", "2000h"), StringComparison.Ordinal);
        _dir.Write("long.txt", "#SHOAL node-setup echo " + new string('x', 140_000) + "\ntouch ran.1\n"); // (the kernel refuses so long an argument)
        Assert.Contains("long.txt:1: the #SHOAL node-setup command is over", await ExpectExit2("run", "long.txt"), StringComparison.Ordinal);
        Assert.False(File.Exists(_dir.File("ran.1")));
    }

    public void Dispose() => _dir.Dispose();
}
