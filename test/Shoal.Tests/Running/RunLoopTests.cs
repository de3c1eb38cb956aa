using System.Text;
using Microsoft.Extensions.Time.Testing;
using Shoal.Execution;
using Shoal.Journal;
using Shoal.Running;
using Shoal.Tasks;
using Shoal.Tests.Support;

namespace Shoal.Tests.Running;

public sealed class RunLoopTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly FakeTimeProvider _time = new();
    private FakeLauncher? _launcher;

    private FakeLauncher Launcher => _launcher ?? throw new InvalidOperationException("no loop yet");

    private (RunLoop Loop, RunJournal Journal, JournalWriter Writer) Build(string taskFile, RunOptions? options = null, int slots = 2, string[]? gpus = null)
    {
        var tasks = TaskSources.FromTaskFile(Encoding.UTF8.GetBytes(taskFile), "t");
        var journal = RunJournal.Open(_dir.File("journal.db"), create: true);
        var writer = new JournalWriter(journal);
        var loop = new RunLoop(tasks, options ?? new RunOptions(), journal, writer, _time);
        _launcher = new FakeLauncher(loop.ExitSink);
        loop.AddWorker(new WorkerInfo(0, "h", slots, gpus ?? []), _launcher);
        loop.ExpectNoMoreWorkers();
        return (loop, journal, writer);
    }

    [Fact]
    public async Task Run_StartsNextTaskWhenASlotFrees_NeverMoreThanSlots()
    {
        var (loop, journal, writer) = Build("a\nb\nc\nd\ne\n", slots: 2);
        using (journal)
        using (writer)
        {
            var run = loop.RunAsync();
            await Eventually.True(() => Launcher.Launched.Count == 2, "two started");
            for (var finished = 0; finished < 5; finished++)
            {
                await Eventually.True(() => Launcher.Running.Count > 0, "something running");
                Launcher.Finish(Launcher.Running.First().Task);
            }

            var outcome = await run;
            writer.Complete();
            Assert.Equal(5, outcome.Succeeded);
            Assert.Equal(0, outcome.ExitCode);
            Assert.Equal(2, Launcher.MaxConcurrent);
            Assert.Equal(5, journal.LatestAttempts([AttemptState.Succeeded]).Count);
        }
    }

    [Fact]
    public async Task Run_FailedTaskWithRetries_IsRetriedAndEveryAttemptRecorded()
    {
        var (loop, journal, writer) = Build("a\n", new RunOptions { Retries = 2 });
        using (journal)
        using (writer)
        {
            var run = loop.RunAsync();
            for (var attempt = 1; attempt <= 3; attempt++)
            {
                await Eventually.True(() => Launcher.Launched.Count == attempt, $"attempt {attempt}");
                Launcher.Finish(0, exitCode: 7);
            }

            var outcome = await run;
            writer.Complete();
            Assert.Equal(1, outcome.Failed);
            Assert.Equal(1, outcome.ExitCode);
            Assert.Equal((1, 7, false), Assert.Single(outcome.FirstFailures));
            var attempts = journal.Attempts(1);
            Assert.Equal([1, 2, 3], attempts.Select(a => a.Attempt));
            Assert.All(attempts, a => Assert.Equal(AttemptState.Failed, a.State));
        }
    }

    [Fact]
    public async Task Run_Timeout_SendsTermThenKillAfterGrace_RecordsTimedOut()
    {
        var (loop, journal, writer) = Build("#SHOAL timeout=10s\nsleep 100\n", new RunOptions { Grace = TimeSpan.FromSeconds(2) });
        using (journal)
        using (writer)
        {
            var run = loop.RunAsync();
            await Eventually.True(() => Launcher.Launched.Count == 1, "started");
            Launcher.DieOnSignal = false;
            _time.Advance(TimeSpan.FromSeconds(9));
            Assert.Empty(Launcher.Signals);
            _time.Advance(TimeSpan.FromSeconds(1.1));
            await Eventually.True(() => Launcher.Signals.Count == 1, "TERM");
            Assert.Equal((0, Native.SIGTERM), Launcher.Signals.Single());
            _time.Advance(TimeSpan.FromSeconds(2.1));
            await Eventually.True(() => Launcher.Signals.Count == 2, "KILL");
            Assert.Equal((0, Native.SIGKILL), Launcher.Signals.Last());
            Launcher.Finish(0, signal: Native.SIGKILL);

            var outcome = await run;
            writer.Complete();
            Assert.True(Assert.Single(outcome.FirstFailures).TimedOut);
            var a = Assert.Single(journal.Attempts(2));
            Assert.Equal(AttemptState.TimedOut, a.State);
            Assert.Equal(-Native.SIGKILL, a.Status);
        }
    }

    [Fact]
    public async Task Stop_TermsRunningTasks_RecordsThemInterrupted_StartsNothingMore()
    {
        var (loop, journal, writer) = Build("a\nb\nc\n", slots: 2);
        using (journal)
        using (writer)
        {
            var run = loop.RunAsync();
            await Eventually.True(() => Launcher.Launched.Count == 2, "started");
            Launcher.Finish(0);
            await Eventually.True(() => Launcher.Launched.Count == 3, "third started");
            loop.RequestStop(Native.SIGTERM);

            var outcome = await run;
            writer.Complete();
            Assert.Equal(143, outcome.ExitCode);
            Assert.Equal(1, outcome.Succeeded);
            Assert.Equal(2, outcome.Interrupted);
            Assert.Equal(3, Launcher.Launched.Count);
            Assert.All(Launcher.Signals, s => Assert.Equal(Native.SIGTERM, s.Signal));
            Assert.Equal(2, journal.LatestAttempts([AttemptState.Interrupted]).Count);
        }
    }

    [Theory]
    [InlineData(false, AttemptState.Succeeded)]
    [InlineData(true, AttemptState.Interrupted)]
    public async Task Stop_ExitZero_IsSuccessOnlyWhenItCameBeforeOurSignal(bool signalled, AttemptState expected)
    {
        var (loop, journal, writer) = Build("a\n");
        using (journal)
        using (writer)
        {
            var run = loop.RunAsync();
            await Eventually.True(() => Launcher.Launched.Count == 1, "started");
            Launcher.DieOnSignal = false;
            loop.RequestStop(Native.SIGTERM);
            await Eventually.True(() => Launcher.Signals.Count == 1, "TERM sent");
            Launcher.Finish(0, exitCode: 0, signalled: signalled);
            await run;
            writer.Complete();
            var a = Assert.Single(journal.Attempts(1));
            Assert.Equal((expected, 0), (a.State, a.Status));
        }
    }

    [Theory]
    [InlineData(false, AttemptState.Succeeded)]
    [InlineData(true, AttemptState.TimedOut)]
    public async Task Timeout_ExitZero_IsSuccessOnlyWhenItCameBeforeOurSignal(bool signalled, AttemptState expected)
    {
        var (loop, journal, writer) = Build("#SHOAL timeout=1s\na\n");
        using (journal)
        using (writer)
        {
            var run = loop.RunAsync();
            await Eventually.True(() => Launcher.Launched.Count == 1, "started");
            Launcher.DieOnSignal = false;
            _time.Advance(TimeSpan.FromSeconds(1.2));
            await Eventually.True(() => Launcher.Signals.Count == 1, "TERM sent");
            Launcher.Finish(0, exitCode: 0, signalled: signalled);
            await run;
            writer.Complete();
            Assert.Equal(expected, Assert.Single(journal.Attempts(2)).State);
        }
    }

    [Fact]
    public async Task Stop_RightAfterATaskDiedOfSigterm_RecordsItInterruptedNotFailed()
    {
        // SLURM's time limit TERMs every process of the job: a task's death can reach the loop before our own stop.
        var (loop, journal, writer) = Build("a\nb\n", new RunOptions { Retries = 0 }, slots: 2);
        using (journal)
        using (writer)
        {
            var run = loop.RunAsync();
            await Eventually.True(() => Launcher.Launched.Count == 2, "started");
            Launcher.Finish(0, exitCode: -1, signal: Native.SIGTERM);
            _time.Advance(TimeSpan.FromMilliseconds(300));
            loop.RequestStop(Native.SIGTERM);
            var outcome = await run;
            writer.Complete();
            Assert.Equal(0, outcome.Failed);
            Assert.Equal(2, outcome.Interrupted);
            Assert.Empty(outcome.FirstFailures);
            Assert.Equal(2, journal.LatestAttempts([AttemptState.Interrupted]).Count);
        }
    }

    [Fact]
    public async Task Stop_ATaskThatDiedOfSigtermLongBefore_StaysFailed()
    {
        var (loop, journal, writer) = Build("a\nb\n", slots: 2);
        using (journal)
        using (writer)
        {
            var run = loop.RunAsync();
            await Eventually.True(() => Launcher.Launched.Count == 2, "started");
            Launcher.Finish(0, exitCode: -1, signal: Native.SIGTERM);
            await Eventually.True(() => loop.Progress.Failed == 1, "failure seen");
            _time.Advance(TimeSpan.FromSeconds(5));
            loop.RequestStop(Native.SIGTERM);
            var outcome = await run;
            writer.Complete();
            Assert.Equal(1, outcome.Failed);
            Assert.Equal(AttemptState.Failed, Assert.Single(journal.Attempts(1)).State);
        }
    }

    [Fact]
    public async Task Stop_WorkerThatNeverAnswers_IsGivenUpAfterGraceAndDrain_TasksInterrupted()
    {
        var (loop, journal, writer) = Build("a\n", new RunOptions { Grace = TimeSpan.FromSeconds(3), StopDrain = TimeSpan.FromSeconds(5) });
        using (journal)
        using (writer)
        {
            var run = loop.RunAsync();
            await Eventually.True(() => Launcher.Launched.Count == 1, "started");
            Launcher.DieOnSignal = false; // a silent remote worker: no exit ever comes
            loop.RequestStop(Native.SIGTERM);
            await Eventually.True(() => Launcher.Signals.Count == 1, "TERM");
            _time.Advance(TimeSpan.FromSeconds(3.2));
            await Eventually.True(() => Launcher.Signals.Count == 2, "KILL after the grace");
            Assert.False(run.IsCompleted);
            _time.Advance(TimeSpan.FromSeconds(5.2));
            var outcome = await run;
            writer.Complete();
            Assert.Equal(1, outcome.Interrupted);
            Assert.Equal(AttemptState.Interrupted, Assert.Single(journal.Attempts(1)).State);
        }
    }

    [Fact]
    public async Task SpawnFailure_IsRequeuedWithBackoff_NotATaskFailure()
    {
        var (loop, journal, writer) = Build("a\n", new RunOptions { Retries = 0 });
        using (journal)
        using (writer)
        {
            var run = loop.RunAsync();
            await Eventually.True(() => Launcher.Launched.Count == 1, "started");
            Launcher.Finish(0, exitCode: Native.EAGAIN, spawnFailed: true);
            await Task.Delay(100);
            Assert.Single(Launcher.Launched); // backing off: the worker is paused
            _time.Advance(TimeSpan.FromMilliseconds(150));
            await Eventually.True(() => Launcher.Launched.Count == 2, "started again after the backoff");
            Launcher.Finish(0);
            var outcome = await run;
            writer.Complete();
            Assert.Equal((1, 0, 1, 0), (outcome.Succeeded, outcome.Failed, outcome.SpawnFailures, outcome.ExitCode));
            var attempts = journal.Attempts(1);
            Assert.Equal([AttemptState.Interrupted, AttemptState.Succeeded], attempts.Select(a => a.State));
        }
    }

    [Fact]
    public async Task SpawnFailures_ThatPersist_StopStartingOnTheOnlyWorker_LetRunningTasksEnd_Exit1()
    {
        var (loop, journal, writer) = Build("a\nb\nc\n", new RunOptions { SpawnGiveUp = TimeSpan.FromSeconds(10) }, slots: 2);
        using (journal)
        using (writer)
        {
            var run = loop.RunAsync();
            await Eventually.True(() => Launcher.Launched.Count == 2, "started");
            var first = Launcher.Running.First(r => r.Task == 0);
            for (var i = 0; !run.IsCompleted && i < 200; i++)
            {
                foreach (var r in Launcher.Running.Where(r => r.Task != 0))
                {
                    Launcher.Finish(r.Task, exitCode: Native.EAGAIN, spawnFailed: true);
                }

                _time.Advance(TimeSpan.FromSeconds(1));
                await Task.Delay(5);
                if (i == 30)
                {
                    Launcher.Finish(0); // the task that did start ends normally
                }
            }

            var outcome = await run;
            writer.Complete();
            Assert.Contains("could not start any task for 10 s (Resource temporarily unavailable", outcome.SpawnError, StringComparison.Ordinal);
            Assert.Equal((1, 0, 2, 1), (outcome.Succeeded, outcome.Failed, outcome.NotRun, outcome.ExitCode));
            Assert.DoesNotContain(journal.AllAttempts(), a => a.State == AttemptState.Failed);
            Assert.Equal(1, first.Attempt);
        }
    }

    [Fact]
    public async Task Resume_SkipsSucceeded_RerunsInterruptedAndUnstarted_FailedOnlyWithRetryFailed()
    {
        const string file = "ok\nfails\nrunning\nnever\n";
        var (loop, journal, writer) = Build(file, slots: 3);
        using (journal)
        using (writer)
        {
            var run = loop.RunAsync();
            await Eventually.True(() => Launcher.Launched.Count == 3, "started");
            Launcher.Finish(0);
            Launcher.Finish(1, exitCode: 1);
            await Eventually.True(() => Launcher.Launched.Count == 4, "fourth started");
            loop.RequestStop(Native.SIGINT);
            Assert.Equal(130, (await run).ExitCode);
            writer.Complete();
        }

        var (again, journal2, writer2) = Build(file, slots: 3);
        using (journal2)
        using (writer2)
        {
            Assert.Equal(1, again.Progress.AlreadyDone);
            Assert.Equal(1, again.Progress.AlreadyFailed);
            var run = again.RunAsync();
            await Eventually.True(() => Launcher.Launched.Count == 2, "reruns started");
            Assert.Equal([2, 3], Launcher.Launched.Select(l => l.Task).Order());
            Assert.All(Launcher.Launched, l => Assert.Equal(2, l.Attempt)); // both were interrupted in attempt 1
            Launcher.Finish(2);
            Launcher.Finish(3);
            var outcome = await run;
            writer2.Complete();
            Assert.Equal(1, outcome.ExitCode); // the failure from before still counts
            Assert.Equal(2, outcome.Succeeded);
        }

        var (retry, journal3, writer3) = Build(file, new RunOptions { RetryFailed = true }, slots: 3);
        using (journal3)
        using (writer3)
        {
            var run = retry.RunAsync();
            await Eventually.True(() => Launcher.Launched.Count == 1, "failed rerun");
            var l = Launcher.Launched.Single();
            Assert.Equal((1, 2), (l.Task, l.Attempt));
            Launcher.Finish(1);
            Assert.Equal(0, (await run).ExitCode);
        }
    }

    [Fact]
    public async Task Gpus_NeverSharedBetweenRunningTasks()
    {
        var (loop, journal, writer) = Build(string.Concat(Enumerable.Repeat("#SHOAL gpus=1\nx\n#SHOAL gpus=2\ny\n", 20)), new RunOptions { ManageGpus = true }, slots: 8, gpus: ["0", "1", "2"]);
        using (journal)
        using (writer)
        {
            var run = loop.RunAsync();
            var finished = 0;
            while (finished < 40)
            {
                await Eventually.True(() => Launcher.Running.Count > 0, "running");
                var held = Launcher.Running.SelectMany(r => r.Gpus!).ToList();
                Assert.Equal(held.Count, held.Distinct().Count());
                Assert.True(held.Count <= 3);
                Launcher.Finish(Launcher.Running.First().Task);
                finished++;
            }

            Assert.Equal(40, (await run).Succeeded);
        }
    }

    [Fact]
    public async Task WorkerLost_ItsTasksAreInterruptedAndRerunElsewhere_LateExitsIgnored()
    {
        var tasks = TaskSources.FromTaskFile(Encoding.UTF8.GetBytes("a\nb\nc\nd\n"), "t");
        using var journal = RunJournal.Open(_dir.File("journal.db"), create: true);
        using var writer = new JournalWriter(journal);
        var loop = new RunLoop(tasks, new RunOptions(), journal, writer, _time);
        var one = new FakeLauncher(loop.ExitSink) { Worker = 1 };
        var two = new FakeLauncher(loop.ExitSink) { Worker = 2 };
        loop.AddWorker(new WorkerInfo(1, "n1", 2, []), one);
        loop.AddWorker(new WorkerInfo(2, "n2", 2, []), two);
        var run = loop.RunAsync();
        await Eventually.True(() => one.Launched.Count + two.Launched.Count == 4, "all four started");
        var lost = one.Running.Select(r => r.Task).ToList();
        Assert.NotEmpty(lost);

        loop.LoseWorker(1);
        foreach (var t in two.Running.Select(r => r.Task).ToList())
        {
            two.Finish(t);
        }

        await Eventually.True(() => two.Launched.Count == 2 + lost.Count, "lost tasks rerun on worker 2");
        one.Finish(lost[0]); // a late report from the lost worker must not count
        foreach (var t in two.Running.Select(r => r.Task).ToList())
        {
            two.Finish(t);
        }

        loop.ExpectNoMoreWorkers();
        loop.LoseWorker(2);
        var outcome = await run;
        writer.Complete();
        Assert.Equal(4, outcome.Succeeded);
        Assert.Equal(lost.Count, outcome.Interrupted);
        foreach (var t in lost)
        {
            Assert.Equal([AttemptState.Interrupted, AttemptState.Succeeded], journal.Attempts(tasks.Id(t)).Select(a => a.State));
        }
    }

    [Fact]
    public async Task AllWorkersLost_RunEndsWithTasksNotRun()
    {
        var tasks = TaskSources.FromTaskFile(Encoding.UTF8.GetBytes("a\nb\nc\n"), "t");
        using var journal = RunJournal.Open(_dir.File("journal.db"), create: true);
        using var writer = new JournalWriter(journal);
        var loop = new RunLoop(tasks, new RunOptions(), journal, writer, _time);
        var one = new FakeLauncher(loop.ExitSink) { Worker = 1 };
        loop.AddWorker(new WorkerInfo(1, "n1", 1, []), one);
        loop.ExpectNoMoreWorkers();
        var run = loop.RunAsync();
        await Eventually.True(() => one.Launched.Count == 1, "started");
        loop.LoseWorker(1);
        var outcome = await run;
        Assert.True(loop.RanOutOfWorkers);
        Assert.Equal(3, outcome.NotRun);
        Assert.Equal(1, outcome.ExitCode);
    }

    [Fact]
    public async Task InlineExitSink_SpawnFailuresOnTheSpawnerThread_GiveTheWorkerUp_WithoutDeadlock()
    {
        // Worker 0 is a real ProcessLauncher reporting through InlineExitSink whose lane logs cannot be opened, so
        // every start fails on its spawner thread; worker 1 takes the tasks once worker 0 is given up. Giving it up
        // disposes its launcher, which joins its spawner threads: handled on the spawner thread itself, that join
        // never returned (found by review).
        var tasks = TaskSources.FromTaskFile(Encoding.UTF8.GetBytes("a\nb\nc\nd\n"), "t");
        using var journal = RunJournal.Open(_dir.File("inline.db"), create: true);
        using var writer = new JournalWriter(journal);
        var loop = new RunLoop(tasks, new RunOptions { SpawnGiveUp = TimeSpan.FromMilliseconds(300) }, journal, writer, TimeProvider.System);
        var logs = _dir.File("logs");
        var local = new ProcessLauncher(new ProcessLauncherOptions("/bin/sh", logs, 2, []), loop.InlineExitSink);
        Directory.Delete(logs, recursive: true);
        var remote = new FakeLauncher(loop.ExitSink) { Worker = 1 };
        loop.AddWorker(new WorkerInfo(0, "local", 2, []), local);
        loop.AddWorker(new WorkerInfo(1, "remote", 1, []), remote);
        loop.ExpectNoMoreWorkers();
        var run = loop.RunAsync();
        await Task.Delay(1000); // worker 1 holds its one task, so worker 0 keeps failing until it is given up (300 ms)
        await Eventually.True(
            () =>
            {
                foreach (var r in remote.Running)
                {
                    remote.Finish(r.Task);
                }

                return run.IsCompleted;
            },
            $"the run ends on worker 1 (launched there: {remote.Launched.Count})");
        Assert.Equal(4, (await run).Succeeded);
    }

    public void Dispose() => _dir.Dispose();
}
