using System.Globalization;
using System.Text.RegularExpressions;
using Shoal.Journal;
using Shoal.Tests.Support;

namespace Shoal.Tests.EndToEnd;

/// <summary>
/// Per-node setup and teardown (--node-setup, --node-teardown, #SHOAL node-setup) and barriers (#SHOAL barrier) in real
/// two-node SLURM jobs. Tasks and steps write $SHOAL_NODE and <c>date +%s%N</c> to files in the test's directory; both
/// nodes share this machine's clock, so the stamps of different nodes compare.
/// </summary>
[Collection("slurm")]
public sealed partial class SlurmNodeStepsTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly string _name = "steps-" + Guid.NewGuid().ToString("N")[..8];

    public SlurmNodeStepsTests(SlurmCluster cluster) => Assert.NotNull(cluster);

    [Fact]
    public async Task TwoNodes_SetupOncePerNodeBeforeItsTasks_TeardownOncePerNodeAfterThem_NodesShowsBothOk()
    {
        // 24 tasks of 0.2 to 1 s on 2 x 4 slots. Relative paths: setup and teardown run where the tasks do.
        File.WriteAllText(_dir.File("tasks.txt"), string.Concat(Enumerable.Range(0, 24).Select(i =>
            string.Create(CultureInfo.InvariantCulture, $"echo $SHOAL_TASK_ID $SHOAL_NODE start $(date +%s%N) >> tasks.log; sleep {0.2 + (i % 5 * 0.2):0.0}; echo $SHOAL_TASK_ID $SHOAL_NODE end $(date +%s%N) >> tasks.log\n"))));
        const string setup = "echo setup-start $SHOAL_NODE $(date +%s%N) >> steps.log; echo hello from setup on $SHOAL_NODE; sleep 1; "
            + "echo setup-end $SHOAL_NODE $SHOAL_STEP $SHOAL_NODE_SLOTS $SHOAL_SESSION $SHOAL_RUN_DIR $(date +%s%N) >> steps.log";
        const string teardown = "echo teardown $SHOAL_NODE $SHOAL_STEP $SHOAL_NODE_SLOTS $SHOAL_SESSION $SHOAL_RUN_DIR $(date +%s%N) >> steps.log; echo bye from teardown on $SHOAL_NODE";
        var job = SlurmCluster.Submit(_dir.Path, $"{SlurmCluster.ShoalCommand} run tasks.txt --keep-nodes --node-setup {Quote(setup)} --node-teardown {Quote(teardown)}", "-N2", "-c4", "-J", _name);
        await SlurmCluster.WaitAsync(job, TimeSpan.FromMinutes(2));

        var output = File.ReadAllText(_dir.File("job.out"));
        Assert.True(SlurmCluster.ExitCode(job) == 0, output);
        Assert.Contains("24 succeeded, 0 failed", output, StringComparison.Ordinal);

        var tasks = Records("tasks.log");
        Assert.Equal(Enumerable.Range(1, 24), tasks.Where(t => t[2] == "start").Select(t => int.Parse(t[0], CultureInfo.InvariantCulture)).Order());
        Assert.Equal(Enumerable.Range(1, 24), tasks.Where(t => t[2] == "end").Select(t => int.Parse(t[0], CultureInfo.InvariantCulture)).Order());
        var taskNodes = tasks.Select(t => t[1]).Distinct().Order().ToList();
        Assert.Equal(["node1", "node2"], taskNodes);

        var steps = Records("steps.log");
        var setupStarts = steps.Where(s => s[0] == "setup-start").ToList();
        var setupEnds = steps.Where(s => s[0] == "setup-end").ToList();
        var teardowns = steps.Where(s => s[0] == "teardown").ToList();
        var runDir = Path.GetFullPath(_dir.File("tasks.txt.shoal"));
        Assert.Equal(taskNodes, setupStarts.Select(s => s[1]).Order()); // exactly once per node, on the nodes the tasks ran on
        Assert.Equal(taskNodes, setupEnds.Select(s => s[1]).Order());
        Assert.Equal(taskNodes, teardowns.Select(s => s[1]).Order());
        Assert.All(setupEnds, s => Assert.Equal(["setup", "4", "1", runDir], s[2..6]));
        Assert.All(teardowns, s => Assert.Equal(["teardown", "4", "1", runDir], s[2..6]));

        foreach (var node in taskNodes)
        {
            var firstStart = tasks.Where(t => t[1] == node && t[2] == "start").Min(t => Stamp(t[3]));
            var lastEnd = tasks.Where(t => t[1] == node && t[2] == "end").Max(t => Stamp(t[3]));
            var setupEnd = Stamp(setupEnds.Single(s => s[1] == node)[6]);
            var teardownStart = Stamp(teardowns.Single(s => s[1] == node)[6]);
            Assert.True(setupEnd < firstStart, $"{node}: setup ended at {setupEnd}, after its first task started at {firstStart}");
            Assert.True(teardownStart > lastEnd, $"{node}: teardown started at {teardownStart}, before its last task ended at {lastEnd}");

            // Each step's output goes to RUNDIR/out/s1/w<ID>-<HOST>-setup.log and -teardown.log.
            var setupLog = Assert.Single(Directory.GetFiles(_dir.File("tasks.txt.shoal/out/s1"), $"w*-{node}-setup.log"));
            Assert.Contains($"hello from setup on {node}", File.ReadAllText(setupLog), StringComparison.Ordinal);
            var teardownLog = Assert.Single(Directory.GetFiles(_dir.File("tasks.txt.shoal/out/s1"), $"w*-{node}-teardown.log"));
            Assert.Contains($"bye from teardown on {node}", File.ReadAllText(teardownLog), StringComparison.Ordinal);
        }

        var nodes = SlurmCluster.Shoal(_dir.Path, "nodes", "tasks.txt.shoal");
        Assert.True(nodes.ExitCode == 0, nodes.Output);
        foreach (var node in taskNodes)
        {
            Assert.Matches(BothOk(), NodeLine(nodes.Output, node)); // setup "ok 1.0s", teardown "ok 0.0s"
        }
    }

    [Fact]
    public async Task TimeLimit_TasksStopped_ThenTeardownOnBothNodes()
    {
        // The real time limit (--time=1; slurmctld checks limits every 30 s, so the job ends 60 to 90 s after its start):
        // SLURM sends TERM to every process of the job and KILL KillWait (5 s here, ci/slurm/start-cluster) later, so
        // the stop and the teardown have those 5 s. The tasks ignore TERM (so does their sleep, which inherits it):
        // they end only by the run's KILL, --grace 1s after the stop began, so a teardown that did not wait for them
        // would come about a second before their ends. Their ends are the journal's (a shell trap cannot be trusted to
        // stamp: dash may drop a pending trap, and SLURM's TERM also hits the trap's own date).
        var d = _dir.Path;
        File.WriteAllText(_dir.File("tasks.txt"), string.Concat(Enumerable.Range(0, 4).Select(_ =>
            $"echo $SHOAL_TASK_ID $SHOAL_NODE $(date +%s%N) >> {d}/started.log; trap '' TERM; sleep 300\n")));
        var setup = $"echo setup $SHOAL_NODE $(date +%s%N) >> {d}/steps.log";
        var teardown = $"echo teardown $SHOAL_NODE $(date +%s%N) >> {d}/steps.log";
        var job = SlurmCluster.Submit(_dir.Path, $"{SlurmCluster.ShoalCommand} run tasks.txt --grace 1s --node-setup {Quote(setup)} --node-teardown {Quote(teardown)}", "-N2", "-c2", "--time=1", "-J", _name);
        await SlurmCluster.WaitAsync(job, TimeSpan.FromMinutes(3));

        var output = File.ReadAllText(_dir.File("job.out"));
        Assert.Contains("JobState=TIMEOUT", SlurmCluster.Run("scontrol", ["show", "job", job]).Output, StringComparison.Ordinal);
        Assert.Contains("DUE TO TIME LIMIT", output, StringComparison.Ordinal);

        var started = Records("started.log");
        Assert.Equal(4, started.Count);
        Assert.Equal(["node1", "node2"], started.Select(s => s[1]).Distinct().Order());
        var nodeOf = started.ToDictionary(s => int.Parse(s[0], CultureInfo.InvariantCulture), s => s[1]);
        List<AttemptRecord> attempts;
        using (var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true))
        {
            attempts = [.. journal.AllAttempts()];
        }

        Assert.Equal(nodeOf.Keys.Order(), attempts.Select(a => a.TaskId).Order());
        Assert.All(attempts, a => Assert.Equal(AttemptState.Interrupted, a.State));

        var steps = Records("steps.log");
        var setups = steps.Where(s => s[0] == "setup").ToList();
        var teardowns = steps.Where(s => s[0] == "teardown").ToList();
        Assert.Equal(["node1", "node2"], setups.Select(s => s[1]).Order());
        Assert.True(teardowns.Select(s => s[1]).Order().SequenceEqual(["node1", "node2"]), $"teardown records: [{string.Join("; ", teardowns.Select(t => string.Join(' ', t)))}] (want one on node1 and one on node2)\n{output}");
        foreach (var node in new[] { "node1", "node2" })
        {
            var setupAt = Stamp(setups.Single(s => s[1] == node)[2]);
            var firstStart = started.Where(s => s[1] == node).Min(s => Stamp(s[2]));
            var lastEndMs = attempts.Where(a => nodeOf[a.TaskId] == node).Max(a => a.StartUnixMs + a.DurationMs);
            var teardownMs = Stamp(teardowns.Single(s => s[1] == node)[2]) / 1_000_000;
            Assert.True(setupAt < firstStart, $"{node}: setup at {setupAt}, after its first task started at {firstStart}");
            // A few ms for the journal's rounding; a teardown that did not wait would be about --grace (1 s) early.
            Assert.True(teardownMs >= lastEndMs - 5, $"{node}: teardown at {teardownMs} ms, before its last task ended at {lastEndMs} ms\n{output}");
        }

        var nodes = SlurmCluster.Shoal(_dir.Path, "nodes", "tasks.txt.shoal");
        Assert.True(nodes.ExitCode == 0, nodes.Output);
        Assert.Matches(BothOk(), NodeLine(nodes.Output, "node1"));
        Assert.Matches(BothOk(), NodeLine(nodes.Output, "node2"));
    }

    [Fact]
    public async Task SetupFailsOnOneNode_EveryTaskRunsOnTheOther_RunSucceeds_FailureReported()
    {
        // The task file's form of the steps; setup fails with exit 3 on node2 (not the leader's node, node1).
        var d = _dir.Path;
        File.WriteAllText(_dir.File("tasks.txt"),
            $"#SHOAL node-setup echo setup $SHOAL_NODE >> {d}/steps.log; echo setup output on $SHOAL_NODE; [ \"$SHOAL_NODE\" != node2 ] || exit 3\n"
            + $"#SHOAL node-teardown echo teardown $SHOAL_NODE >> {d}/steps.log\n"
            + string.Concat(Enumerable.Range(0, 12).Select(_ => $"echo $SHOAL_TASK_ID $SHOAL_NODE $(hostname) >> {d}/ran.log; sleep 0.3\n")));
        var job = SlurmCluster.Submit(_dir.Path, $"{SlurmCluster.ShoalCommand} run tasks.txt", "-N2", "-c4", "-J", _name);
        await SlurmCluster.WaitAsync(job, TimeSpan.FromMinutes(2));

        var output = File.ReadAllText(_dir.File("job.out"));
        Assert.True(SlurmCluster.ExitCode(job) == 0, output);
        Assert.Contains("12 succeeded, 0 failed", output, StringComparison.Ordinal);
        Assert.Contains("node setup failed on node2", output, StringComparison.Ordinal);
        var ran = Records("ran.log");
        Assert.Equal(Enumerable.Range(3, 12), ran.Select(r => int.Parse(r[0], CultureInfo.InvariantCulture)).Order()); // ids are line numbers
        Assert.All(ran, r => Assert.Equal(["node1", "node1"], r[1..3]));

        var steps = Records("steps.log");
        Assert.Equal(["node1", "node2"], steps.Where(s => s[0] == "setup").Select(s => s[1]).Order());
        Assert.Equal(["node1", "node2"], steps.Where(s => s[0] == "teardown").Select(s => s[1]).Order()); // also where setup failed
        var failedLog = Assert.Single(Directory.GetFiles(_dir.File("tasks.txt.shoal/out/s1"), "w*-node2-setup.log"));
        Assert.Contains("setup output on node2", File.ReadAllText(failedLog), StringComparison.Ordinal);

        var nodes = SlurmCluster.Shoal(_dir.Path, "nodes", "tasks.txt.shoal");
        Assert.True(nodes.ExitCode == 0, nodes.Output);
        Assert.Matches(BothOk(), NodeLine(nodes.Output, "node1"));
        Assert.Matches(SetupExit3TeardownOk(), NodeLine(nodes.Output, "node2"));

        var status = SlurmCluster.Shoal(_dir.Path, "status", "tasks.txt.shoal");
        Assert.True(status.ExitCode == 0, status.Output);
        var setupLine = status.Output.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("node setup:", StringComparison.Ordinal)) ?? "";
        Assert.True(setupLine.Length > 0, status.Output);
        Assert.Contains("failed", setupLine, StringComparison.Ordinal);
        Assert.Contains("node2", setupLine, StringComparison.Ordinal);
        Assert.Contains("exit 3", setupLine, StringComparison.Ordinal);
        Assert.Contains(status.Output.Split('\n'), l => l.Trim().StartsWith("node teardown:", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Barrier_TwoPhasesOnTwoNodes_EveryPhaseTwoTaskStartsAfterEveryPhaseOneTaskEnded()
    {
        // Phase 1: 12 tasks on 8 slots, two of them 2 s long; without the barrier phase 2 would fill the idle slots at once.
        static string Line(int phase, string sleep) =>
            $"echo {phase} $SHOAL_TASK_ID $SHOAL_NODE start $(date +%s%N) >> tasks.log; sleep {sleep}; echo {phase} $SHOAL_TASK_ID $SHOAL_NODE end $(date +%s%N) >> tasks.log\n";
        File.WriteAllText(_dir.File("tasks.txt"),
            string.Concat(Enumerable.Range(0, 12).Select(i => Line(1, i < 2 ? "2" : "0.3")))
            + "#SHOAL barrier\n"
            + string.Concat(Enumerable.Range(0, 8).Select(_ => Line(2, "0.3"))));
        var job = SlurmCluster.Submit(_dir.Path, $"{SlurmCluster.ShoalCommand} run tasks.txt", "-N2", "-c4", "-J", _name);
        await SlurmCluster.WaitAsync(job, TimeSpan.FromMinutes(2));

        var output = File.ReadAllText(_dir.File("job.out"));
        Assert.True(SlurmCluster.ExitCode(job) == 0, output);
        Assert.Contains("20 succeeded, 0 failed", output, StringComparison.Ordinal);
        var tasks = Records("tasks.log");
        List<string[]> Of(string phase, string what) => [.. tasks.Where(t => t[0] == phase && t[3] == what)];
        Assert.Equal(Enumerable.Range(1, 12), Of("1", "end").Select(t => int.Parse(t[1], CultureInfo.InvariantCulture)).Order());
        Assert.Equal(Enumerable.Range(14, 8), Of("2", "start").Select(t => int.Parse(t[1], CultureInfo.InvariantCulture)).Order()); // the barrier is line 13
        Assert.Equal(["node1", "node2"], Of("1", "start").Select(t => t[2]).Distinct().Order());
        Assert.Equal(["node1", "node2"], Of("2", "start").Select(t => t[2]).Distinct().Order());

        var lastPhaseOne = Of("1", "end").MaxBy(t => Stamp(t[4]))!;
        var firstPhaseTwo = Of("2", "start").MinBy(t => Stamp(t[4]))!;
        Assert.True(Stamp(firstPhaseTwo[4]) > Stamp(lastPhaseOne[4]),
            $"task {firstPhaseTwo[1]} (phase 2) started on {firstPhaseTwo[2]} at {firstPhaseTwo[4]}, before task {lastPhaseOne[1]} (phase 1) ended on {lastPhaseOne[2]} at {lastPhaseOne[4]}");
    }

    [Fact]
    public async Task BarrierStopOnFailure_ATaskAboveFailed_NothingBelowStarts_ExitOne()
    {
        File.WriteAllText(_dir.File("tasks.txt"),
            "echo 1 $SHOAL_TASK_ID >> ran.log\necho 1 $SHOAL_TASK_ID >> ran.log\necho 1 $SHOAL_TASK_ID >> ran.log; exit 1\necho 1 $SHOAL_TASK_ID >> ran.log\n"
            + "#SHOAL barrier stop-on-failure\n"
            + string.Concat(Enumerable.Range(0, 4).Select(_ => "echo 2 $SHOAL_TASK_ID >> ran.log\n")));
        var job = SlurmCluster.Submit(_dir.Path, $"{SlurmCluster.ShoalCommand} run tasks.txt", "-N2", "-c4", "-J", _name);
        await SlurmCluster.WaitAsync(job, TimeSpan.FromMinutes(2));

        var output = File.ReadAllText(_dir.File("job.out"));
        Assert.True(SlurmCluster.ExitCode(job) == 1, output);
        Assert.Contains("stopped at the barrier on line 5 (stop-on-failure): 1 task(s) above it failed", output, StringComparison.Ordinal);
        Assert.Contains("3 succeeded, 1 failed", output, StringComparison.Ordinal);
        Assert.Contains("4 not run", output, StringComparison.Ordinal);
        Assert.Equal(["1 1", "1 2", "1 3", "1 4"], File.ReadAllLines(_dir.File("ran.log")).Order());
    }

    public void Dispose()
    {
        SlurmCluster.CancelNamed(_name);
        _dir.Dispose();
    }

    /// <summary>A <c>shoal nodes</c> row whose SETUP and TEARDOWN cells both read "ok DURATION".</summary>
    [GeneratedRegex(@"\bok \S+\s+ok \S+")]
    private static partial Regex BothOk();

    [GeneratedRegex(@"\bexit 3 \S+\s+ok \S+")]
    private static partial Regex SetupExit3TeardownOk();

    /// <summary>The one row of <c>shoal nodes</c> output for <paramref name="host"/> (session 1 has one worker per node).</summary>
    private static string NodeLine(string output, string host)
    {
        var rows = output.Split('\n').Where(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains(host)).ToList();
        Assert.True(rows.Count == 1, $"want one row for {host} in shoal nodes:\n{output}");
        return rows[0];
    }

    /// <summary>Single-quoted for the batch script's bash.</summary>
    private static string Quote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    private static long Stamp(string s) => long.Parse(s, NumberStyles.None, CultureInfo.InvariantCulture);

    /// <summary>The lines of a record file in the test's directory, split at spaces (none when it is missing).</summary>
    private List<string[]> Records(string name) =>
        File.Exists(_dir.File(name)) ? [.. File.ReadAllLines(_dir.File(name)).Where(l => l.Length > 0).Select(l => l.Split(' '))] : [];
}
