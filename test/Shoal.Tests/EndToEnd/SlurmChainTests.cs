using System.Globalization;
using Shoal.Journal;
using Shoal.Tests.Support;

namespace Shoal.Tests.EndToEnd;

/// <summary>
/// Runs longer than one job: the job's end holds what cannot finish before it, <c>--continue</c> and
/// <c>shoal submit</c> chain jobs until every task has ended, and a node with nothing left to run is handed back.
/// Every job of a test carries the test's own job name, so its leftovers are found and cancelled by name.
/// </summary>
[Collection("slurm")]
public sealed class SlurmChainTests : IDisposable
{
    private static readonly HashSet<string> Ended = ["COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"];

    private readonly TempDir _dir = new();
    private readonly string _name = "chain-" + Guid.NewGuid().ToString("N")[..8];

    public SlurmChainTests(SlurmCluster cluster) => Assert.NotNull(cluster);

    [Fact]
    public async Task Submit_ThreeJobsOfWork_FinishesByItself_EachTaskOnce_NoneCutByTheLimit()
    {
        // 8 slots (2 nodes x 4 CPUs), 1-minute jobs: with the 13.6 s margin a job starts 4 s tasks for about 40 s,
        // about 80 of them; 200 need three jobs.
        const int count = 200;
        File.WriteAllText(_dir.File("tasks.txt"), string.Concat(Enumerable.Range(0, count).Select(_ => "sleep 4; echo $SHOAL_TASK_ID $(hostname) >> ran.log\n")));
        var submit = SlurmCluster.Shoal(_dir.Path, "submit", "tasks.txt", "--", "-N", "2", "-c", "4", "--time=1", "-J", _name);
        Assert.True(submit.ExitCode == 0, submit.Output);
        var first = submit.Output.Split('\n')[0].Trim();
        Assert.True(first.Length > 0 && first.All(char.IsAsciiDigit), submit.Output);

        var jobs = await WaitForChainAsync(TimeSpan.FromMinutes(8));

        Assert.DoesNotContain(jobs, j => j.State == "TIMEOUT");
        var ran = File.ReadAllLines(_dir.File("ran.log")).Select(l => int.Parse(l.Split(' ')[0], CultureInfo.InvariantCulture)).Order().ToList();
        Assert.Equal(Enumerable.Range(1, count), ran); // every task once: none ran twice, none was lost

        using var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true);
        var latest = journal.LatestAttempts();
        Assert.Equal(count, latest.Count);
        Assert.All(latest, a => Assert.Equal(AttemptState.Succeeded, a.State));
        var cut = journal.AllAttempts().Where(a => a.State is AttemptState.Interrupted or AttemptState.TimedOut or AttemptState.Running).ToList();
        Assert.True(cut.Count == 0, $"attempts cut by the job's end: {string.Join(", ", cut.Select(a => $"task {a.TaskId} attempt {a.Attempt} {a.State}"))}");

        var chain = journal.Chain();
        Assert.All(chain, c => Assert.Null(c.Error));
        var chainJobs = chain.Select(c => c.Job!).ToList();
        Assert.Equal(first, chainJobs[0]);
        Assert.StartsWith("submit:", chain[0].By, StringComparison.Ordinal);
        Assert.InRange(chainJobs.Count, 2, 5);
        // Each job after the first was submitted by the one before it.
        Assert.Equal(chainJobs.SkipLast(1), chain.Skip(1).Select(c => c.By));

        var sessions = journal.Sessions();
        var sessionJobs = journal.SessionJobs();
        Assert.Equal(chainJobs, sessions.Select(s => sessionJobs[s.Id]));
        var last = sessions[^1];
        Assert.NotNull(last.Ended);
        Assert.DoesNotContain(chain, c => c.By == sessionJobs[last.Id]); // the job that finished everything submitted nothing
        Assert.All(chain, c => Assert.True(c.Submitted <= last.Started, "a job was submitted after the last session started"));

        var outputs = chainJobs.Select(j => File.ReadAllText(_dir.File($"tasks.txt.shoal/jobs/slurm-{j}.out"))).ToList();
        Assert.All(outputs, o => Assert.DoesNotContain("DUE TO TIME LIMIT", o, StringComparison.Ordinal));
        for (var k = 0; k + 1 < outputs.Count; k++)
        {
            Assert.Contains("shoal: out of time: ", outputs[k], StringComparison.Ordinal);
            Assert.Contains($"shoal: continuing in job {chainJobs[k + 1]} (job {k + 2} of at most ", outputs[k], StringComparison.Ordinal);
        }

        Assert.Contains("not continuing in a next job: nothing is left to run", outputs[^1], StringComparison.Ordinal);
        Assert.All(chainJobs, j => Assert.Equal(j == chainJobs[^1] ? 0 : 75, SlurmCluster.ExitCode(j)));
    }

    [Fact]
    public async Task Submit_FinishesInItsFirstJob_NoContinuation()
    {
        File.WriteAllText(_dir.File("tasks.txt"), string.Concat(Enumerable.Range(0, 8).Select(_ => "echo $SHOAL_TASK_ID >> ran.log\n")));
        var submit = SlurmCluster.Shoal(_dir.Path, "submit", "tasks.txt", "--", "-N", "2", "-c", "2", "--time=1", "-J", _name);
        Assert.True(submit.ExitCode == 0, submit.Output);
        var job = submit.Output.Split('\n')[0].Trim();
        var script = File.ReadAllText(_dir.File("tasks.txt.shoal/jobs/run.sbatch"));
        Assert.Contains($"#SBATCH --output={_dir.Path}/tasks.txt.shoal/jobs/slurm-%j.out\n", script, StringComparison.Ordinal);
        Assert.Contains("#SBATCH -N 2\n", script, StringComparison.Ordinal);
        Assert.Contains($"cd {_dir.Path} || exit 1\n", script, StringComparison.Ordinal);
        Assert.Contains(" run tasks.txt --continue\n", script, StringComparison.Ordinal);

        var jobs = await WaitForChainAsync(TimeSpan.FromMinutes(2));

        Assert.Equal([job], jobs.Select(j => j.Id));
        Assert.Equal(0, SlurmCluster.ExitCode(job));
        Assert.Equal(8, File.ReadAllLines(_dir.File("ran.log")).Distinct().Count());
        var output = File.ReadAllText(_dir.File($"tasks.txt.shoal/jobs/slurm-{job}.out"));
        Assert.Contains("shoal: not continuing in a next job: nothing is left to run", output, StringComparison.Ordinal);
        using var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true);
        var chain = Assert.Single(journal.Chain());
        Assert.StartsWith("submit:", chain.By, StringComparison.Ordinal);
        Assert.Equal(job, chain.Job);
    }

    [Fact]
    public async Task NoTaskCanFinishBeforeTheEnd_OutOfTimeWithoutProgress_NoContinuation()
    {
        File.WriteAllText(_dir.File("tasks.txt"), "#SHOAL timeout=5m\necho $SHOAL_TASK_ID >> ran.log\n#SHOAL timeout=5m\necho $SHOAL_TASK_ID >> ran.log\n");
        var submit = SlurmCluster.Shoal(_dir.Path, "submit", "tasks.txt", "--", "-N", "1", "--time=1", "-J", _name);
        Assert.True(submit.ExitCode == 0, submit.Output);
        var job = submit.Output.Split('\n')[0].Trim();

        var jobs = await WaitForChainAsync(TimeSpan.FromMinutes(2));

        Assert.Equal([job], jobs.Select(j => j.Id));
        Assert.Equal(75, SlurmCluster.ExitCode(job));
        Assert.False(File.Exists(_dir.File("ran.log")), "a task that cannot finish before the job's end was started");
        var output = File.ReadAllText(_dir.File($"tasks.txt.shoal/jobs/slurm-{job}.out"));
        Assert.Contains("shoal: out of time: 2 tasks could not finish before the job's end and did not start", output, StringComparison.Ordinal);
        Assert.Contains("not continuing in a next job: this job finished no task (no progress", output, StringComparison.Ordinal);
        using var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true);
        Assert.Single(journal.Chain());
        Assert.Empty(journal.AllAttempts());
    }

    [Fact]
    public async Task BadTaskFile_InAContinuingJob_ExitsTwo_SubmitsNothing()
    {
        File.WriteAllText(_dir.File("tasks.txt"), "echo one\n#SHOAL cpus=abc\necho two\n");
        var job = SlurmCluster.Submit(_dir.Path, $"{SlurmCluster.ShoalCommand} run tasks.txt --continue", "-N1", "--time=1", "-J", _name);
        await SlurmCluster.WaitAsync(job, TimeSpan.FromMinutes(1));

        Assert.Equal(2, SlurmCluster.ExitCode(job));
        var output = File.ReadAllText(_dir.File("job.out"));
        Assert.Contains("tasks.txt:2: cpus=abc is not a whole number", output, StringComparison.Ordinal);
        Assert.DoesNotContain("continuing in job", output, StringComparison.Ordinal);
        Assert.Equal([job], SlurmCluster.JobsNamed(_name).Select(j => j.Id));
        var journal = _dir.File("tasks.txt.shoal/journal.db");
        if (File.Exists(journal))
        {
            using var j = RunJournal.Open(journal, create: false, readOnly: true);
            Assert.Empty(j.Chain());
        }
    }

    [Fact]
    public void Submit_BadTaskFile_RefusedOnTheLoginNode_NothingSubmitted()
    {
        File.WriteAllText(_dir.File("tasks.txt"), "echo one\n#SHOAL cpus=abc\necho two\n");
        var submit = SlurmCluster.Shoal(_dir.Path, "submit", "tasks.txt", "--", "-N", "1", "--time=1", "-J", _name);

        Assert.Equal(2, submit.ExitCode);
        Assert.Contains("tasks.txt:2: cpus=abc is not a whole number", submit.Output, StringComparison.Ordinal);
        Assert.False(File.Exists(_dir.File("tasks.txt.shoal/jobs/run.sbatch")));
        Assert.Empty(SlurmCluster.JobsNamed(_name));

        var continued = SlurmCluster.Shoal(_dir.Path, "submit", "tasks.txt", "--continue", "--", "-N", "1", "-J", _name);
        Assert.Equal(2, continued.ExitCode);
        Assert.Empty(SlurmCluster.JobsNamed(_name));
    }

    [Fact]
    public async Task TwoNodeJob_SecondNodeIdleAtTheTail_HandedBackWhileTheLeadersNodeRuns()
    {
        var (job, nodeLists) = await RunTailJobAsync(keepNodes: false);

        var leader = File.ReadAllText(_dir.File("leader.txt")).Trim();
        Assert.Contains(leader, nodeLists); // squeue showed the job on the leader's node alone while it still ran
        Assert.Contains("node[1-2]", nodeLists);
        var output = File.ReadAllText(_dir.File("job.out"));
        Assert.Contains("handed back to SLURM", output, StringComparison.Ordinal);
        Assert.Contains("16 succeeded, 0 failed", output, StringComparison.Ordinal);
        Assert.Equal(0, SlurmCluster.ExitCode(job));
        using var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true);
        var release = Assert.Single(journal.Releases());
        Assert.Null(release.Error);
        Assert.NotEqual(leader, release.Host);
        Assert.True(release.Host is "node1" or "node2", release.Host);
    }

    [Fact]
    public async Task TwoNodeJob_KeepNodes_NoNodeHandedBack()
    {
        var (job, nodeLists) = await RunTailJobAsync(keepNodes: true);

        Assert.Equal(["node[1-2]"], nodeLists);
        var output = File.ReadAllText(_dir.File("job.out"));
        Assert.DoesNotContain("handed back", output, StringComparison.Ordinal);
        Assert.Contains("16 succeeded, 0 failed", output, StringComparison.Ordinal);
        Assert.Equal(0, SlurmCluster.ExitCode(job));
        using var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true);
        Assert.Empty(journal.Releases());
    }

    /// <summary>16 tasks on 2 nodes x 4 CPUs: those on the leader's node (the batch host) take 12 s, the others 1 s,
    /// so the other node drains the queue and goes idle while the leader's node still runs its four.</summary>
    private async Task<(string Job, HashSet<string> NodeLists)> RunTailJobAsync(bool keepNodes)
    {
        File.WriteAllText(_dir.File("tasks.txt"), string.Concat(Enumerable.Range(0, 16).Select(_ =>
            "if [ \"$(hostname)\" = \"$(cat leader.txt)\" ]; then sleep 12; else sleep 1; fi; echo $SHOAL_TASK_ID $(hostname) >> ran.log\n")));
        var job = SlurmCluster.Submit(_dir.Path, $"hostname > leader.txt\n{SlurmCluster.ShoalCommand} run tasks.txt{(keepNodes ? " --keep-nodes" : "")}", "-N2", "-c4", "--time=2", "-J", _name);
        var nodeLists = new HashSet<string>();
        await SlurmCluster.WaitAsync(job, TimeSpan.FromMinutes(2), () =>
        {
            var r = SlurmCluster.Run("squeue", ["-h", "-j", job, "-t", "RUNNING", "-o", "%N"]);
            if (r.Output.Trim() is { Length: > 0 } nodes)
            {
                nodeLists.Add(nodes);
            }
        });

        var ran = File.ReadAllLines(_dir.File("ran.log")).Select(l => int.Parse(l.Split(' ')[0], CultureInfo.InvariantCulture)).Order();
        Assert.Equal(Enumerable.Range(1, 16), ran);
        return (job, nodeLists);
    }

    /// <summary>Waits until every job of this test's name has ended (a job submits its continuation before it ends,
    /// so the chain has ended when none is pending or running); returns them, oldest first.</summary>
    private async Task<List<(string Id, string State)>> WaitForChainAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var jobs = SlurmCluster.JobsNamed(_name);
            if (jobs.Count > 0 && jobs.All(j => Ended.Contains(j.State)))
            {
                return [.. jobs.OrderBy(j => long.Parse(j.Id, CultureInfo.InvariantCulture))];
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"the chain of {_name} still runs after {timeout}: {string.Join(", ", jobs.Select(j => $"{j.Id} {j.State}"))}");
            }

            await Task.Delay(1000);
        }
    }

    public void Dispose()
    {
        SlurmCluster.CancelNamed(_name);
        _dir.Dispose();
    }
}
