using Shoal.Journal;
using Shoal.Tests.Support;

namespace Shoal.Tests.Faults;

/// <summary>kill -9 of shoal at seeded random moments, again and again, then a resume to the end.</summary>
public sealed class KillAndResumeTests : IDisposable
{
    private readonly TempDir _dir = new();

    [Fact]
    public async Task KillNine_TwentySeededTrials_EveryResultRecordedOnce_NothingFinishedRunsAgain()
    {
        const int tasks = 3000;
        _dir.Write("tasks.txt", string.Concat(Enumerable.Repeat("echo $SHOAL_TASK_ID $SHOAL_ATTEMPT >> done.log\n", tasks)));
        var random = new Random(20261127);
        var journalPath = _dir.File("tasks.txt.shoal/journal.db");
        var recordedBefore = new Dictionary<int, int>(); // task -> the attempt that was recorded as succeeded
        for (var trial = 0; trial < 20; trial++)
        {
            using var p = ShoalBinary.Start(_dir.Path, ["run", "tasks.txt", "--slots", "4", "-q"]);
            await Task.Delay(random.Next(30, 900));
            try
            {
                p.Kill();
            }
            catch (InvalidOperationException)
            {
                // it had already finished: the run is complete
            }

            await p.WaitForExitAsync();
            if (!File.Exists(journalPath))
            {
                continue;
            }

            using var journal = RunJournal.Open(journalPath, create: false, readOnly: true);
            foreach (var a in journal.LatestAttempts([AttemptState.Succeeded]))
            {
                Assert.True(recordedBefore.TryAdd(a.TaskId, a.Attempt) || recordedBefore[a.TaskId] == a.Attempt, $"task {a.TaskId}: a second success recorded");
            }
        }

        await Task.Delay(300); // let tasks orphaned by the last kill end (they were never recorded)
        var final = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "4");
        Assert.Equal(0, final.ExitCode);

        Dictionary<int, int> succeededAttempt;
        using (var journal = RunJournal.Open(journalPath, create: false, readOnly: true))
        {
            var all = journal.AllAttempts();
            var succeeded = all.Where(a => a.State == AttemptState.Succeeded).GroupBy(a => a.TaskId).ToList();
            Assert.Equal(tasks, succeeded.Count);
            Assert.All(succeeded, g => Assert.Single(g));
            Assert.DoesNotContain(all, a => a.State == AttemptState.Running);
            succeededAttempt = succeeded.ToDictionary(g => g.Key, g => g.Single().Attempt);
        }

        // Every execution logged "id attempt". Once an attempt is recorded as succeeded, no later attempt of that task
        // may have started: the highest attempt that ever ran is the recorded one. (Attempts that ran but were never
        // recorded, because the kill came first, may have run more than once: they were not finished as far as the
        // journal knows.)
        var executions = File.ReadAllLines(_dir.File("done.log")).Select(l => l.Split(' ')).Select(p => (Id: int.Parse(p[0]), Attempt: int.Parse(p[1]))).ToList();
        Assert.Equal(tasks, executions.Select(e => e.Id).Distinct().Count());
        Assert.NotEmpty(recordedBefore);
        Assert.All(recordedBefore, kv => Assert.Equal(kv.Value, succeededAttempt[kv.Key]));
        Assert.All(executions.GroupBy(e => e.Id), g => Assert.Equal(succeededAttempt[g.Key], g.Max(e => e.Attempt)));
    }

    public void Dispose() => _dir.Dispose();
}
