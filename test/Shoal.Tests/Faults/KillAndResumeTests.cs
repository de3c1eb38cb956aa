using System.Globalization;
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

    /// <summary>
    /// Issue 9's acceptance for resume after kill -9: 20 seeded trials, each a fresh run of 150 tasks of 0–30 ms on 2
    /// slots killed at a random moment, then resumed. Every task ends done with its own output; only tasks in flight
    /// at the kill (started, and not recorded as finished when shoal died) ever run again; a task that had already
    /// ended ran again only if it ended within one commit of the kill (group commit: not a 50 ms timer's worth); and
    /// no rerun overlaps its killed copy (the resume ends survivors first).
    /// </summary>
    [Fact]
    public async Task KillNine_TwentyFreshRuns_OnlyInFlightTasksRerun_NeverOverlapping_OutputRangesExact()
    {
        var random = new Random(9_2026_11_28);
        var marks = _dir.File("marks");
        for (var trial = 0; trial < 20; trial++)
        {
            var name = $"t{trial}.txt";
            _dir.Write(name, string.Concat(Enumerable.Range(1, 150).Select(i =>
                $"echo \"S $SHOAL_TASK_ID $(date +%s%N)\" >> {marks}{trial}; sleep 0.{random.Next(0, 31):D3}; echo out-$SHOAL_TASK_ID; echo \"E $SHOAL_TASK_ID $(date +%s%N)\" >> {marks}{trial}\n")));
            long killNs;
            using (var p = ShoalBinary.Start(_dir.Path, ["run", name, "--slots", "2", "-q"]))
            {
                await Eventually.True(() => File.Exists(marks + trial), "tasks started");
                await Task.Delay(random.Next(20, 1200));
                killNs = (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;
                try
                {
                    p.Kill();
                }
                catch (InvalidOperationException)
                {
                }

                await p.WaitForExitAsync();
            }

            HashSet<int> recorded;
            using (var journal = RunJournal.Open(_dir.File($"{name}.shoal/journal.db"), create: false, readOnly: true))
            {
                recorded = [.. journal.LatestAttempts([AttemptState.Succeeded]).Select(a => a.TaskId)];
            }

            // Everything started before the resume was started by the killed run (a task spawned just before the kill
            // may write its start mark just after it: seen 5 ms after, with the resume begun 4 ms after; so the resume
            // waits 200 ms, long enough for those marks, short of any task's end).
            await Task.Delay(200);
            var resumeNs = (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;
            var resume = await ShoalBinary.RunAsync(_dir.Path, "run", name, "--slots", "2", "-q");
            Assert.True(resume.ExitCode == 0, resume.Stderr);

            var lines = File.ReadAllLines(marks + trial).Select(l => l.Split(' ')).Select(f => (Kind: f[0], Id: int.Parse(f[1], CultureInfo.InvariantCulture), Ns: long.Parse(f[2], CultureInfo.InvariantCulture))).ToList();
            var starts = lines.Where(l => l.Kind == "S").GroupBy(l => l.Id).ToDictionary(g => g.Key, g => g.Select(l => l.Ns).Order().ToList());
            var ends = lines.Where(l => l.Kind == "E").GroupBy(l => l.Id).ToDictionary(g => g.Key, g => g.Select(l => l.Ns).Order().ToList());
            Assert.Equal(150, starts.Count);
            var inFlight = starts.Where(kv => kv.Value[0] < resumeNs && !recorded.Contains(kv.Key)).Select(kv => kv.Key).ToHashSet();
            var reruns = starts.Where(kv => kv.Value.Count > 1).Select(kv => kv.Key).ToList();
            Assert.True(
                reruns.Count <= inFlight.Count,
                $"trial {trial}: {reruns.Count} reruns, {inFlight.Count} in flight at the kill; reruns: {string.Join(", ", reruns.Select(id => $"{id} (starts {string.Join("/", starts[id].Select(n => (n - killNs) / 1_000_000))} ms after the kill, recorded {recorded.Contains(id)})"))}; resume {(resumeNs - killNs) / 1_000_000} ms after the kill");
            foreach (var id in reruns)
            {
                Assert.True(inFlight.Contains(id), $"trial {trial}: task {id} ran again although it was recorded finished or had not started");
                if (ends.TryGetValue(id, out var e) && e[0] < killNs)
                {
                    // It ended before the kill but its end was not committed yet: the window is one commit.
                    Assert.True(killNs - e[0] < 20_000_000, $"trial {trial}: task {id} ended {(killNs - e[0]) / 1e6:0.0} ms before the kill and still ran again");
                }

                // Both copies ran to their end mark: the first must have ended before the second started. (A copy the
                // resume killed writes no end mark; the only end mark is then the rerun's own.)
                if (ends.TryGetValue(id, out var end) && end.Count >= 2)
                {
                    Assert.True(end[0] < starts[id][^1], $"trial {trial}: task {id}'s rerun started while its killed copy still ran");
                }
            }

            using var after = RunJournal.Open(_dir.File($"{name}.shoal/journal.db"), create: false, readOnly: true);
            var workers = after.Workers().ToDictionary(w => (w.Session, w.Id), w => w.LogPrefix);
            var succeeded = after.AllAttempts().Where(a => a.State == AttemptState.Succeeded).ToList();
            Assert.Equal(150, succeeded.Count);
            Assert.Equal(150, succeeded.Select(a => a.TaskId).Distinct().Count());
            foreach (var a in succeeded)
            {
                var path = new Shoal.Running.RunDirectory(_dir.File($"{name}.shoal")).LaneLog(a.Session, workers[(a.Session, a.Worker)], a.Lane, false, a.Log);
                using var f = File.OpenRead(path);
                var bytes = new byte[a.OutLength];
                f.Position = a.OutOffset;
                f.ReadExactly(bytes);
                Assert.Equal($"out-{a.TaskId}\n", System.Text.Encoding.UTF8.GetString(bytes));
            }
        }
    }

    public void Dispose() => _dir.Dispose();
}
