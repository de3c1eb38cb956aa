using System.Globalization;
using Shoal.Journal;
using Shoal.Tests.Support;

namespace Shoal.Tests.EndToEnd;

/// <summary>shoal inside real SLURM batch jobs on a two-node cluster.</summary>
[Collection("slurm")]
public sealed class SlurmEndToEndTests : IDisposable
{
    private readonly TempDir _dir = new();

    public SlurmEndToEndTests(SlurmCluster cluster) => Assert.NotNull(cluster);

    [Fact]
    public async Task BatchJob_TwoNodes_EveryTaskOnceOnBothNodes_ExactlyOneWorkerStep()
    {
        File.WriteAllText(_dir.File("tasks.txt"), string.Concat(Enumerable.Range(0, 48).Select(_ => "echo $SHOAL_TASK_ID $(hostname) >> ran.log; sleep 0.2\n")));
        var job = SlurmCluster.Submit(_dir.Path, $"{SlurmCluster.ShoalCommand} run tasks.txt", "-N2", "-c4");
        var steps = new HashSet<string>();
        await SlurmCluster.WaitAsync(job, TimeSpan.FromMinutes(2), () => steps.UnionWith(SlurmCluster.Steps(job)));

        var output = File.ReadAllText(_dir.File("job.out"));
        Assert.Contains("48 succeeded, 0 failed", output, StringComparison.Ordinal);
        Assert.Contains("2 nodes node[1-2], CPUs per node 4,4", output, StringComparison.Ordinal);
        var ran = File.ReadAllLines(_dir.File("ran.log")).Select(l => l.Split(' ')).ToList();
        Assert.Equal(Enumerable.Range(1, 48), ran.Select(r => int.Parse(r[0], CultureInfo.InvariantCulture)).Order());
        Assert.Equal(["node1", "node2"], ran.Select(r => r[1]).Distinct().Order());
        Assert.Contains($"{job}.0", steps);
        Assert.DoesNotContain($"{job}.1", steps);
        Assert.DoesNotContain(steps, s => s != $"{job}.0" && s != $"{job}.batch" && s != $"{job}.extern");
    }

    [Fact]
    public async Task BatchJob_OneNode_RunsThroughItsOneWorker()
    {
        File.WriteAllText(_dir.File("tasks.txt"), string.Concat(Enumerable.Range(0, 10).Select(_ => "echo $SHOAL_TASK_ID $(hostname) >> ran.log\n")));
        var job = SlurmCluster.Submit(_dir.Path, $"{SlurmCluster.ShoalCommand} run tasks.txt; {SlurmCluster.ShoalCommand} cat 3", "-N1", "-c2");
        await SlurmCluster.WaitAsync(job, TimeSpan.FromMinutes(2));

        var output = File.ReadAllText(_dir.File("job.out"));
        Assert.Contains("1 node node", output, StringComparison.Ordinal);
        Assert.Contains("10 succeeded, 0 failed", output, StringComparison.Ordinal);
        Assert.Single(File.ReadAllLines(_dir.File("ran.log")).Select(l => l.Split(' ')[1]).Distinct());
        Assert.Equal(10, File.ReadAllLines(_dir.File("ran.log")).Length);
    }

    [Fact]
    public async Task BatchJob_GpuTasks_GetDistinctGpusPerNodeAndNeverShare()
    {
        var text = string.Concat(Enumerable.Range(0, 16).Select(i =>
            (i % 4 == 0 ? "#SHOAL gpus=2\n" : "#SHOAL gpus=1\n") + "echo $(hostname) $CUDA_VISIBLE_DEVICES $(date +%s%N) >> gpu.log; sleep 0.3; echo $(hostname) $CUDA_VISIBLE_DEVICES $(date +%s%N) >> gpu.log\n"));
        File.WriteAllText(_dir.File("tasks.txt"), text);
        var job = SlurmCluster.Submit(_dir.Path, $"{SlurmCluster.ShoalCommand} run tasks.txt", "-N2", "-c4", "--gres=gpu:2");
        await SlurmCluster.WaitAsync(job, TimeSpan.FromMinutes(2));

        Assert.Contains("16 succeeded", File.ReadAllText(_dir.File("job.out")), StringComparison.Ordinal);
        var lines = File.ReadAllLines(_dir.File("gpu.log")).Select(l => l.Split(' ')).ToList();
        // Pair start and end lines per (host, devices): intervals of one GPU on one host must not overlap.
        var intervals = new List<(string Host, string Gpu, long Start, long End)>();
        foreach (var group in lines.GroupBy(l => (l[0], l[1])))
        {
            var times = group.Select(l => long.Parse(l[2], CultureInfo.InvariantCulture)).Order().ToList();
            for (var k = 0; k + 1 < times.Count; k += 2)
            {
                foreach (var gpu in group.Key.Item2.Split(','))
                {
                    intervals.Add((group.Key.Item1, gpu, times[k], times[k + 1]));
                }
            }
        }

        Assert.All(lines, l => Assert.True(l[1].Split(',').All(g => g is "0" or "1"), $"unexpected CUDA_VISIBLE_DEVICES {l[1]}"));
        foreach (var g in intervals.GroupBy(i => (i.Host, i.Gpu)))
        {
            var sorted = g.OrderBy(i => i.Start).ToList();
            for (var k = 1; k < sorted.Count; k++)
            {
                Assert.True(sorted[k].Start >= sorted[k - 1].End, $"GPU {g.Key.Gpu} on {g.Key.Host} was shared");
            }
        }
    }

    [Fact]
    public async Task BatchJob_OneNodesWorkerKilled_RunStillCompletesEveryTask()
    {
        File.WriteAllText(_dir.File("tasks.txt"), string.Concat(Enumerable.Range(0, 32).Select(_ => "sleep 0.7; echo $SHOAL_TASK_ID $(hostname) >> ran.log\n")));
        var job = SlurmCluster.Submit(_dir.Path, $"{SlurmCluster.ShoalCommand} run tasks.txt", "-N2", "-c4");
        int? killed = null;
        await SlurmCluster.WaitAsync(job, TimeSpan.FromMinutes(2), () =>
        {
            if (killed is null && File.Exists(_dir.File("ran.log")) && SlurmCluster.WorkerPid(job, "node2") is { } pid)
            {
                Shoal.Execution.Native.Kill(pid, Shoal.Execution.Native.SIGKILL);
                killed = pid;
            }
        });

        Assert.NotNull(killed);
        var output = File.ReadAllText(_dir.File("job.out"));
        Assert.Contains("on node2 lost", output, StringComparison.Ordinal);
        Assert.Contains("32 succeeded, 0 failed", output, StringComparison.Ordinal);
        using var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true);
        var done = journal.LatestAttempts([AttemptState.Succeeded]);
        Assert.Equal(32, done.Count);
        Assert.Equal(Enumerable.Range(1, 32), done.Select(a => a.TaskId));
    }

    [Fact]
    public async Task WorkerStoppedPastHeartbeat_IsDeclaredLost_LateResultsNotCounted()
    {
        File.WriteAllText(_dir.File("tasks.txt"), string.Concat(Enumerable.Range(0, 32).Select(_ => "sleep 0.5; echo $SHOAL_TASK_ID $SHOAL_ATTEMPT $(hostname) >> ran.log\n")));
        var job = SlurmCluster.Submit(_dir.Path, $"{SlurmCluster.ShoalCommand} run tasks.txt", "-N2", "-c4", "--export=ALL,SHOAL_HEARTBEAT_TIMEOUT=3");
        int? stopped = null;
        var continued = false;
        await SlurmCluster.WaitAsync(job, TimeSpan.FromMinutes(2), () =>
        {
            if (stopped is null && File.Exists(_dir.File("ran.log")) && SlurmCluster.WorkerPid(job, "node2") is { } pid)
            {
                Shoal.Execution.Native.Kill(pid, 19); // SIGSTOP
                stopped = pid;
            }
            else if (stopped is { } p && !continued && File.ReadAllText(_dir.File("job.out")).Contains("on node2 lost", StringComparison.Ordinal))
            {
                Shoal.Execution.Native.Kill(p, Shoal.Execution.Native.SIGCONT);
                continued = true;
            }
        });

        Assert.True(continued, "the stopped worker was never declared lost");
        var output = File.ReadAllText(_dir.File("job.out"));
        Assert.Contains("was silent for 3 s", output, StringComparison.Ordinal);
        Assert.Contains("32 succeeded, 0 failed", output, StringComparison.Ordinal);
        using var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true);
        var succeeded = journal.AllAttempts().Where(a => a.State == AttemptState.Succeeded).GroupBy(a => a.TaskId).ToList();
        Assert.Equal(32, succeeded.Count);
        Assert.All(succeeded, g => Assert.Single(g));
    }

    [Fact]
    public async Task TimeLimitTerm_ThenResumeInAFreshAllocation_CompletesEachTaskOnce()
    {
        File.WriteAllText(_dir.File("tasks.txt"), string.Concat(Enumerable.Range(0, 80).Select(_ => "sleep 0.3; echo $SHOAL_TASK_ID $SHOAL_ATTEMPT >> ran.log\n")));
        var first = SlurmCluster.Submit(_dir.Path, $"{SlurmCluster.ShoalCommand} run tasks.txt --grace 2s", "-N2", "-c4");
        await Eventually.True(() => File.Exists(_dir.File("ran.log")) && File.ReadAllLines(_dir.File("ran.log")).Length >= 16, "a fifth done", 60_000);
        // What SLURM does at the time limit: TERM to every process of the job (batch script, leader, srun, workers, tasks).
        SlurmCluster.Run("scancel", ["--signal=TERM", "--full", first]);
        await SlurmCluster.WaitAsync(first, TimeSpan.FromMinutes(1));
        var firstOutput = File.ReadAllText(_dir.File("job.out"));
        Assert.Contains("stopped by signal 15", firstOutput, StringComparison.Ordinal);

        File.Delete(_dir.File("job.out"));
        var second = SlurmCluster.Submit(_dir.Path, $"{SlurmCluster.ShoalCommand} run tasks.txt", "-N2", "-c4");
        await SlurmCluster.WaitAsync(second, TimeSpan.FromMinutes(2));
        Assert.Contains("80 tasks:", File.ReadAllText(_dir.File("job.out")), StringComparison.Ordinal);

        using var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true);
        var succeeded = journal.AllAttempts().Where(a => a.State == AttemptState.Succeeded).GroupBy(a => a.TaskId).ToDictionary(g => g.Key, g => g.Single().Attempt);
        Assert.Equal(80, succeeded.Count);
        var executions = File.ReadAllLines(_dir.File("ran.log")).Select(l => l.Split(' ')).GroupBy(p => int.Parse(p[0], CultureInfo.InvariantCulture));
        Assert.All(executions, g => Assert.Equal(succeeded[g.Key], g.Max(p => int.Parse(p[1], CultureInfo.InvariantCulture))));
    }

    [Fact]
    public async Task LeaderKilled_WorkersKillTheirTasksAndExit_NoOrphans()
    {
        File.WriteAllText(_dir.File("tasks.txt"), string.Concat(Enumerable.Range(0, 8).Select(_ => "echo $$ >> pids.log; sleep 1000\n")));
        // The script outlives shoal, so the job (and its step) stays: only the workers' own reaction can clean up.
        var job = SlurmCluster.Submit(_dir.Path, $"{SlurmCluster.ShoalCommand} run tasks.txt; sleep 60", "-N2", "-c4");
        try
        {
            await Eventually.True(() => File.Exists(_dir.File("pids.log")) && File.ReadAllLines(_dir.File("pids.log")).Length == 8, "all eight tasks running", 60_000);
            var leader = SlurmCluster.LeaderPid(job) ?? throw new InvalidOperationException("no leader process found");
            var tasks = File.ReadAllLines(_dir.File("pids.log")).Select(l => int.Parse(l, CultureInfo.InvariantCulture)).ToList();
            Assert.NotNull(SlurmCluster.WorkerPid(job, "node1"));
            Assert.NotNull(SlurmCluster.WorkerPid(job, "node2"));

            Shoal.Execution.Native.Kill(leader, Shoal.Execution.Native.SIGKILL);

            await Eventually.True(() => SlurmCluster.WorkerPid(job, "node1") is null && SlurmCluster.WorkerPid(job, "node2") is null, "workers exited", 15_000);
            await Eventually.True(() => tasks.All(pid => !SlurmCluster.Alive(pid)), "tasks killed", 15_000);
            Assert.True(SlurmCluster.Running(job), "the job itself is still running (so SLURM did not do the cleanup)");
        }
        finally
        {
            SlurmCluster.Run("scancel", [job]);
        }
    }

    public void Dispose() => _dir.Dispose();
}
