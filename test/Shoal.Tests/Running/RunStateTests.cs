using System.Text;
using Microsoft.Extensions.Time.Testing;
using Shoal.Execution;
using Shoal.Journal;
using Shoal.Running;
using Shoal.Tasks;

namespace Shoal.Tests.Running;

/// <summary>The run's rules, driven synchronously: events in, effects out, a fake clock.</summary>
public sealed class RunStateTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 28, 12, 0, 0, TimeSpan.Zero));
    private readonly Effects _effects = new();

    private RunState Build(string taskFile, RunOptions? options = null, int slots = 2, Action<RunState>? history = null)
    {
        var tasks = TaskSources.FromTaskFile(Encoding.UTF8.GetBytes(taskFile), "t");
        var state = new RunState(tasks, options ?? new RunOptions(), _effects, _time);
        history?.Invoke(state);
        state.Begin();
        state.Join(new WorkerInfo(0, "h", slots, []));
        state.NoMoreWorkers();
        return state;
    }

    private void Finish(RunState state, int task, int exitCode = 0, long durationMs = 1000, bool signalled = false, int signal = 0, bool spawnFailed = false)
    {
        var launch = _effects.Launched.Last(l => l.Request.Task == task);
        state.Exited(new TaskExit(task, launch.Request.Attempt, exitCode, signal, 0, durationMs, launch.Request.Lane, 0, 0, 0, 0, launch.Worker, spawnFailed, Signalled: signalled));
        state.Settle();
    }

    private void Advance(RunState state, TimeSpan by)
    {
        _time.Advance(by);
        state.Tick();
        state.Settle();
    }

    [Fact]
    public void Settle_StartsAsManyAsSlots_AndRecordsEachStart()
    {
        var state = Build("a\nb\nc\n", slots: 2);
        state.Settle();
        Assert.Equal([0, 1], _effects.Launched.Select(l => l.Request.Task));
        Assert.Equal(2, _effects.Records.Count(r => r.State == AttemptState.Running));
        Finish(state, 0);
        Assert.Equal([0, 1, 2], _effects.Launched.Select(l => l.Request.Task));
        Assert.Contains(_effects.Records, r => r.TaskId == 1 && r.State == AttemptState.Succeeded);
    }

    [Fact]
    public void Timeout_TermAtTheLimit_KillAfterTheGrace_RecordedTimedOut()
    {
        var state = Build("a\n", new RunOptions { Timeout = TimeSpan.FromSeconds(10), Grace = TimeSpan.FromSeconds(2) });
        state.Settle();
        Advance(state, TimeSpan.FromSeconds(9.9));
        Assert.Empty(_effects.Signals);
        Advance(state, TimeSpan.FromSeconds(0.2));
        Assert.Equal([Native.SIGTERM], _effects.Signals.Select(s => s.Signal));
        Advance(state, TimeSpan.FromSeconds(2));
        Assert.Equal([Native.SIGTERM, Native.SIGKILL], _effects.Signals.Select(s => s.Signal));
        Finish(state, 0, exitCode: -1, signal: Native.SIGKILL, signalled: true);
        Assert.True(state.Finished);
        Assert.Equal(AttemptState.TimedOut, _effects.Records.Last().State);
        Assert.Equal(1, state.Outcome(TimeSpan.Zero).ExitCode);
    }

    [Fact]
    public void Stop_TermsEverything_KillsAfterGrace_TasksLeftForTheResume()
    {
        var state = Build("a\nb\nc\n", new RunOptions { Grace = TimeSpan.FromSeconds(3) });
        state.Settle();
        state.Stop(Native.SIGTERM);
        state.Settle();
        Assert.Equal(2, _effects.Signals.Count(s => s.Signal == Native.SIGTERM));
        Advance(state, TimeSpan.FromSeconds(3.1));
        Assert.Equal([Native.SIGTERM, Native.SIGTERM, Native.SIGKILL, Native.SIGKILL], _effects.Signals.Select(s => s.Signal));
        Finish(state, 0, exitCode: -1, signal: Native.SIGKILL, signalled: true);
        Finish(state, 1, exitCode: 0); // its own clean exit came first: it succeeded
        Assert.True(state.Finished);
        var outcome = state.Outcome(TimeSpan.Zero);
        Assert.Equal((1, 1, 2, 143), (outcome.Succeeded, outcome.Interrupted, outcome.NotRun, outcome.ExitCode)); // the interrupted one and c
        Assert.Equal(2, _effects.Launched.Count);
    }

    [Fact]
    public void SpawnFailure_IsRequeuedAfterABackoff_NotAFailure()
    {
        var state = Build("a\n", slots: 1);
        state.Settle();
        Finish(state, 0, exitCode: 11, spawnFailed: true);
        Assert.Single(_effects.Launched); // paused for 50 ms
        Advance(state, TimeSpan.FromMilliseconds(100));
        Assert.Equal(2, _effects.Launched.Count);
        Finish(state, 0);
        var outcome = state.Outcome(TimeSpan.Zero);
        Assert.Equal((1, 0, 1, 0), (outcome.Succeeded, outcome.Failed, outcome.SpawnFailures, outcome.ExitCode));
    }

    [Fact]
    public void SpawnFailure_WhileOthersRun_CapsTheWorkerAtWhatRuns_ThenRaisesItOneByOne()
    {
        var state = Build(string.Concat(Enumerable.Repeat("t\n", 20)), slots: 4);
        state.Settle();
        Assert.Equal(4, _effects.Launched.Count);
        Finish(state, 3, exitCode: 11, spawnFailed: true); // the machine holds 3 processes now
        Assert.Equal(4, _effects.Launched.Count); // no retry at once while 3 run
        Advance(state, TimeSpan.FromMilliseconds(10));
        Assert.Equal(4, _effects.Launched.Count);

        Finish(state, 0); // one ended: one starts in its place (3 at once), not two
        Assert.Equal(5, _effects.Launched.Count);
        Finish(state, _effects.Launched[4].Request.Task); // started under the cap and ended well: the cap rises to 4
        Assert.Equal(7, _effects.Launched.Count);
        Finish(state, _effects.Launched[5].Request.Task); // 4 is all the slots: no cap any more
        Assert.Equal(8, _effects.Launched.Count);
        Assert.Equal(4, _effects.Launched.Count - _effects.Records.Count(r => r.State is AttemptState.Succeeded or AttemptState.Interrupted));

        var outcome = state.Outcome(TimeSpan.Zero);
        Assert.Equal((0, 1), (outcome.Failed, outcome.SpawnFailures));
    }

    [Fact]
    public void SpawnFailure_WhileOnlyLongTasksRun_TheCapStillRisesAfterABackoff()
    {
        // One long task and a burst of refused starts on the other three lanes: no end will come to raise the cap,
        // so it rises on a clock (50 ms, doubling with each cut in a row, at most 5 s).
        var state = Build(string.Concat(Enumerable.Repeat("t\n", 8)), slots: 4);
        state.Settle();
        foreach (var task in new[] { 1, 2, 3 })
        {
            Finish(state, task, exitCode: 11, spawnFailed: true);
        }

        Assert.Equal(4, _effects.Launched.Count);
        Advance(state, TimeSpan.FromMilliseconds(100));
        Assert.Equal(5, _effects.Launched.Count); // one more lane tried
        Finish(state, _effects.Launched[4].Request.Task, exitCode: 11, spawnFailed: true); // refused again: cut, 100 ms
        Advance(state, TimeSpan.FromMilliseconds(100));
        Assert.Equal(6, _effects.Launched.Count);
        Advance(state, TimeSpan.FromMilliseconds(100)); // started and still running: the next lane after 100 ms more
        Assert.Equal(7, _effects.Launched.Count);
        Finish(state, _effects.Launched[5].Request.Task); // started after the cut, ended well: no cap any more
        Assert.Equal(9, _effects.Launched.Count); // all 4 lanes busy again
        Assert.Equal(0, state.Outcome(TimeSpan.Zero).Failed);
    }

    [Fact]
    public void SpawnFailure_CapBelowAMultiCoreTask_AnIdleWorkerStillTakesIt()
    {
        var state = Build("a\nb\n#SHOAL cpus=4\nbig\n", slots: 4);
        state.Settle();
        Assert.Equal(["a", "b"], _effects.Launched.Select(l => Encoding.UTF8.GetString(l.Request.Command)));
        Finish(state, 1, exitCode: 11, spawnFailed: true); // 1 runs: capped at 1
        Finish(state, 0); // started before the cap: the cap (1) stays, below big's 4 CPUs; the worker is idle: big starts
        Assert.Equal("big", Encoding.UTF8.GetString(_effects.Launched[2].Request.Command));
        Finish(state, 2);
        Assert.Equal("b", Encoding.UTF8.GetString(_effects.Launched[3].Request.Command));
        Finish(state, 1);
        Assert.True(state.Finished);
        Assert.Equal(0, state.Outcome(TimeSpan.Zero).ExitCode);
    }

    [Fact]
    public void LostWorker_ItsTasksAreInterruptedAndGoElsewhere()
    {
        var state = Build("a\nb\n", slots: 1);
        state.Join(new WorkerInfo(1, "g", 1, []));
        state.Settle();
        Assert.Equal([0, 1], _effects.Launched.Select(l => l.Worker));
        state.LoseWorker(1);
        state.Settle();
        Assert.Equal([1], _effects.Dropped);
        Assert.Contains(_effects.Records, r => r.State == AttemptState.Interrupted && r.Worker == 1);
        Finish(state, _effects.Launched[0].Request.Task);
        Assert.Equal(0, _effects.Launched.Last().Worker); // the lost task runs again on worker 0
        Finish(state, _effects.Launched.Last().Request.Task);
        Assert.True(state.Finished);
        Assert.Equal(0, state.Outcome(TimeSpan.Zero).ExitCode);
    }

    [Fact]
    public void EndKnown_NothingFinished_TasksStartUntilTheMargin()
    {
        var state = Build("a\nb\nc\nd\n", new RunOptions { EndMargin = TimeSpan.FromSeconds(15) }, slots: 1);
        state.SetEnd(_time.GetUtcNow() + TimeSpan.FromSeconds(20));
        state.Settle();
        Assert.Single(_effects.Launched); // nothing known about durations: it may start
        Advance(state, TimeSpan.FromSeconds(4));
        Finish(state, 0, durationMs: 4000);
        Assert.Single(_effects.Launched); // 4 s expected, 1 s left before the margin: it waits for the next job
        Assert.True(state.Finished);
        var outcome = state.Outcome(TimeSpan.Zero);
        Assert.True(outcome.OutOfTime);
        Assert.Equal((1, 3, RunOutcome.Unfinished), (outcome.Succeeded, outcome.NotRun, outcome.ExitCode));
    }

    [Fact]
    public void EndKnown_LearnedFromHistory_AndFromTimeouts()
    {
        // 19 earlier tasks took 2 s and one took 600 s: the 95th percentile ignores the one outlier.
        var file = string.Concat(Enumerable.Range(0, 30).Select(i => i == 25 ? "#SHOAL timeout=60s\nslow\n" : $"t{i}\n"));
        var state = Build(file, new RunOptions { EndMargin = TimeSpan.FromSeconds(10) }, slots: 1, history: s =>
        {
            for (var id = 1; id <= 20; id++)
            {
                s.Recall(id, 1, AttemptState.Succeeded, id == 7 ? 600_000 : 2_000);
            }
        });
        state.SetEnd(_time.GetUtcNow() + TimeSpan.FromSeconds(30));
        state.Settle();
        Assert.InRange(state.Expected(0)!.Value.TotalSeconds, 2, 2.2);
        var started = 0;
        while (!state.Finished)
        {
            Assert.True(started < 30);
            var running = _effects.Launched[^1];
            Advance(state, TimeSpan.FromSeconds(2));
            Finish(state, running.Request.Task, durationMs: 2000);
            started++;
        }

        // 20 s before the margin; 2-s tasks expected to take 2.048 s (the bucket's upper edge): nine start, at 0,
        // 2, ..., 16 s; at 18 s 2 s are left, too few. The task with a 60 s timeout never starts.
        Assert.Equal(9, _effects.Launched.Count);
        Assert.DoesNotContain(_effects.Launched, l => Encoding.UTF8.GetString(l.Request.Command) == "slow");
        Assert.Equal(RunOutcome.Unfinished, state.Outcome(TimeSpan.Zero).ExitCode);
    }

    [Fact]
    public void EndExtended_HeldTasksStartAgain()
    {
        var state = Build("a\nb\n", new RunOptions { EndMargin = TimeSpan.FromSeconds(10), Timeout = TimeSpan.FromSeconds(30) }, slots: 1);
        state.SetEnd(_time.GetUtcNow() + TimeSpan.FromSeconds(20));
        state.Join(new WorkerInfo(1, "g", 1, [])); // a second worker keeps the run from being over while a is held
        state.Settle();
        Assert.Empty(_effects.Launched);
        Assert.True(state.Finished);
        state.SetEnd(_time.GetUtcNow() + TimeSpan.FromHours(1));
        state.Settle();
        Assert.Equal(2, _effects.Launched.Count);
    }

    [Fact]
    public void NoEnd_AllRunsAndExitIsZero()
    {
        var state = Build("a\n", slots: 1);
        state.Settle();
        Finish(state, 0, durationMs: 10_000_000);
        Assert.True(state.Finished);
        Assert.False(state.Outcome(TimeSpan.Zero).OutOfTime);
        Assert.Equal(0, state.Outcome(TimeSpan.Zero).ExitCode);
    }

    [Fact]
    public void IdleWorker_WithNothingLeftForIt_IsReleased_WhileOthersStillRun_NeverTheLeadersNode()
    {
        var state = Build("a\nb\nc\n", new RunOptions { ReleaseIdleWorkers = true }, slots: 1); // worker 0: the leader's node
        state.Join(new WorkerInfo(1, "n2", 1, []) { Releasable = true });
        state.Join(new WorkerInfo(2, "n3", 1, []) { Releasable = true });
        state.Settle();
        Assert.Equal(3, _effects.Launched.Count);
        Finish(state, _effects.Launched.Single(l => l.Worker == 1).Request.Task);
        Assert.Equal([1], _effects.Released); // queue empty, the others still run
        Finish(state, _effects.Launched.Single(l => l.Worker == 0).Request.Task);
        Assert.Equal([1], _effects.Released); // worker 0 is not releasable
        Finish(state, _effects.Launched.Single(l => l.Worker == 2).Request.Task);
        Assert.Equal([1], _effects.Released); // nothing runs any more: the run ends, the job with it
        Assert.True(state.Finished);
        Assert.Equal(0, state.Outcome(TimeSpan.Zero).ExitCode);
    }

    [Fact]
    public void IdleWorker_KeptWhileQueuedTasksCouldUseIt_AndWithoutTheOption()
    {
        var state = Build("a\nb\n#SHOAL cpus=2\nbig\n", new RunOptions { ReleaseIdleWorkers = true }, slots: 2);
        state.Join(new WorkerInfo(1, "n2", 1, []) { Releasable = true });
        state.Settle();
        // a and b run on worker 0 (2 slots); big waits for worker 0; worker 1 (1 slot) can never hold big.
        Assert.Equal([0, 1], _effects.Launched.Select(l => l.Request.Task).Order());
        Assert.Contains(1, _effects.Released); // idle, and the only queued task can never fit it
        _effects.Released.Clear();

        var keep = new RunStateTests();
        var kept = keep.Build("a\nb\nc\n", new RunOptions(), slots: 1);
        kept.Join(new WorkerInfo(1, "n2", 1, []) { Releasable = true });
        kept.Settle();
        keep.Finish(kept, keep._effects.Launched.Single(l => l.Worker == 1).Request.Task);
        keep.Finish(kept, keep._effects.Launched.Single(l => l.Worker == 1 && l.Request.Task == 2).Request.Task);
        Assert.Empty(keep._effects.Released); // --keep-nodes
    }

    [Fact]
    public void OutOfTimeHolds_DoNotReleaseNodes_AndAStopIsNotOutOfTime()
    {
        var state = Build("a\nb\nc\n", new RunOptions { ReleaseIdleWorkers = true, EndMargin = TimeSpan.FromSeconds(10), Timeout = TimeSpan.FromSeconds(30) }, slots: 1);
        state.Join(new WorkerInfo(1, "n2", 1, []) { Releasable = true });
        state.SetEnd(_time.GetUtcNow() + TimeSpan.FromSeconds(45));
        state.Settle();
        Assert.Equal(2, _effects.Launched.Count); // 35 s left: two 30-s tasks start, c waits
        Advance(state, TimeSpan.FromSeconds(6));
        Finish(state, _effects.Launched.Single(l => l.Worker == 1).Request.Task);
        Assert.Equal(2, _effects.Launched.Count); // 29 s left: c (30 s) is held
        Assert.Empty(_effects.Released); // held for time is not unusable: the end may be extended
        state.Stop(Native.SIGTERM); // a user's scancel long before the end
        state.Settle();
        Finish(state, _effects.Launched.Single(l => l.Worker == 0).Request.Task, exitCode: -1, signal: Native.SIGTERM, signalled: true);
        var outcome = state.Outcome(TimeSpan.Zero);
        Assert.False(outcome.OutOfTime);
        Assert.Equal(143, outcome.ExitCode);
        Assert.NotNull(RunSession.WhyNotContinue(outcome, stoppedByTimeLimit: false, ranOutOfWorkers: false, 1, 20));
    }

    [Theory]
    [InlineData(true, 0, false, false, 1, null)]
    [InlineData(false, 0, false, false, 1, "it did not end for lack of time")]
    [InlineData(false, 15, true, false, 1, null)]
    [InlineData(false, 15, false, false, 1, "it was stopped by signal 15 before the allocation's end")]
    [InlineData(true, 0, false, true, 1, "the run lost its workers")]
    [InlineData(true, 0, false, false, 20, "the chain has its 20 jobs (--max-jobs)")]
    public void WhyNotContinue_OnlyWhenTimeRanOutAfterProgress(bool outOfTime, int signal, bool byTimeLimit, bool lostWorkers, int jobs, string? why)
    {
        var outcome = new RunOutcome(10, 0, 0, 4, 0, 0, 6, TimeSpan.Zero, signal, []) { OutOfTime = outOfTime };
        Assert.Equal(why, RunSession.WhyNotContinue(outcome, byTimeLimit, lostWorkers, jobs, 20));
        Assert.Equal("nothing is left to run", RunSession.WhyNotContinue(outcome with { NotRun = 0 }, byTimeLimit, lostWorkers, jobs, 20));
        if (why is null)
        {
            Assert.StartsWith("this job finished no task", RunSession.WhyNotContinue(outcome with { Succeeded = 0 }, byTimeLimit, lostWorkers, jobs, 20), StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("1", 60)]
    [InlineData("2:00", 120)]
    [InlineData("1:30:00", 5400)]
    [InlineData("2-03:05:00", 2 * 86400 + 3 * 3600 + 300)]
    [InlineData("1-2", 86400 + 7200)]
    [InlineData("UNLIMITED", null)]
    [InlineData("NOT_SET", null)]
    public void SlurmTimeLimit_Parsed(string text, int? seconds) =>
        Assert.Equal(seconds is { } s ? TimeSpan.FromSeconds(s) : null, Shoal.Cluster.SlurmJob.ParseLimit(text));

    [Fact]
    public void SlurmEndTime_LocalTimeOrNothing()
    {
        Assert.Equal(new DateTimeOffset(new DateTime(2026, 11, 28, 5, 30, 35, DateTimeKind.Local)), Shoal.Cluster.SlurmJob.ParseLocalTime("2026-11-28T05:30:35"));
        Assert.Null(Shoal.Cluster.SlurmJob.ParseLocalTime("NONE"));
        Assert.Null(Shoal.Cluster.SlurmJob.ParseLocalTime("Unknown"));
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1795843835), Shoal.Cluster.SlurmJob.EndFromEnvironment(n => n == "SLURM_JOB_END_TIME" ? "1795843835" : null));
        Assert.Null(Shoal.Cluster.SlurmJob.EndFromEnvironment(_ => null));
    }

    [Fact]
    public void DurationEstimate_PercentileWithinABucket()
    {
        var estimate = new DurationEstimate();
        Assert.Null(estimate.Percentile(0.95));
        for (var i = 1; i <= 100; i++)
        {
            estimate.Add(i * 100);
        }

        var p95 = estimate.Percentile(0.95)!.Value.TotalMilliseconds;
        Assert.InRange(p95, 9500, 9500 * 1.1);
        Assert.InRange(estimate.Percentile(0.5)!.Value.TotalMilliseconds, 5000, 5000 * 1.1);
    }

    [Fact]
    public void Barrier_NothingBelowStartsUntilEverythingAboveEnded_Retries_Included()
    {
        var state = Build("a\nb\nc\n#SHOAL barrier\nd\ne\n", new RunOptions { Retries = 1 }, slots: 4);
        state.Settle();
        Assert.Equal([0, 1, 2], _effects.Launched.Select(l => l.Request.Task)); // free slots stay idle: d waits
        Finish(state, 0);
        Finish(state, 1, exitCode: 3); // retried: not ended yet
        Assert.Equal([0, 1, 2, 1], _effects.Launched.Select(l => l.Request.Task));
        Finish(state, 2);
        Assert.DoesNotContain(_effects.Launched, l => l.Request.Task >= 3);
        Assert.Empty(_effects.Barriers);
        Finish(state, 1, exitCode: 3); // failed for good: the phase has ended
        Assert.Equal([(4, 1, false)], _effects.Barriers);
        Assert.Equal([3, 4], _effects.Launched.Skip(4).Select(l => l.Request.Task));
        Finish(state, 3);
        Finish(state, 4);
        Assert.True(state.Finished);
        var outcome = state.Outcome(TimeSpan.Zero);
        Assert.Equal((4, 1, 0, 1), (outcome.Succeeded, outcome.Failed, outcome.NotRun, outcome.ExitCode));
        Assert.Null(outcome.StoppedAtBarrier);
    }

    [Fact]
    public void BarrierStopOnFailure_AFailureAnywhereAbove_StopsTheRun_BelowNotRun()
    {
        var state = Build("a\n#SHOAL barrier\nb\n#SHOAL barrier stop-on-failure\nc\nd\n", slots: 4);
        state.Settle();
        Finish(state, 0, exitCode: 1); // fails in the first phase; the plain barrier lets the run go on
        Assert.Equal([0, 1], _effects.Launched.Select(l => l.Request.Task));
        Finish(state, 1);
        Assert.True(state.Finished);
        Assert.Equal(2, _effects.Launched.Count);
        Assert.Equal([(2, 1, false), (4, 1, true)], _effects.Barriers);
        var outcome = state.Outcome(TimeSpan.Zero);
        Assert.Equal((4, 1), outcome.StoppedAtBarrier);
        Assert.Equal((1, 1, 2, 1), (outcome.Succeeded, outcome.Failed, outcome.NotRun, outcome.ExitCode));
    }

    [Fact]
    public void Barrier_OnResume_WhatEndedBeforeCounts_AFailureBeforeStopsAtStopOnFailure()
    {
        var state = Build("a\nb\n#SHOAL barrier\nc\n", slots: 2, history: s =>
        {
            s.Recall(1, 1, AttemptState.Succeeded, 10);
            s.Recall(2, 1, AttemptState.Interrupted, 0);
        });
        state.Settle();
        Assert.Equal([1], _effects.Launched.Select(l => l.Request.Task)); // b runs again first; c waits for it
        Finish(state, 1);
        Assert.Equal([1, 2], _effects.Launched.Select(l => l.Request.Task));

        var second = new Effects();
        var tasks = TaskSources.FromTaskFile(Encoding.UTF8.GetBytes("a\n#SHOAL barrier stop-on-failure\nc\n"), "t");
        var resumed = new RunState(tasks, new RunOptions(), second, _time);
        resumed.Recall(1, 1, AttemptState.Failed, 10);
        resumed.Begin();
        resumed.Join(new WorkerInfo(0, "h", 2, []));
        resumed.NoMoreWorkers();
        resumed.Settle();
        Assert.Empty(second.Launched);
        Assert.True(resumed.Finished);
        Assert.Equal((2, 1), resumed.Outcome(TimeSpan.Zero).StoppedAtBarrier);
    }

    [Fact]
    public void Barrier_IdleNodeAtAPhaseTail_IsNotHandedBack_WhileALaterPhaseNeedsIt()
    {
        var tasks = TaskSources.FromTaskFile(Encoding.UTF8.GetBytes("sleep 9\n#SHOAL barrier\na\nb\nc\n"), "t");
        var state = new RunState(tasks, new RunOptions { ReleaseIdleWorkers = true }, _effects, _time);
        state.Begin();
        state.Join(new WorkerInfo(1, "n1", 1, []) { Releasable = true });
        state.Join(new WorkerInfo(2, "n2", 1, []) { Releasable = true });
        state.Settle();
        state.Settle();
        Assert.Empty(_effects.Released); // n2 is idle, but the tasks below the barrier will need it
        Finish(state, 0);
        Assert.Equal(3, _effects.Launched.Count);
    }

    [Fact]
    public void Barrier_ATaskAboveDiesOfTerm_ThenTheStopArrives_NothingBelowStarted_ItIsInterrupted()
    {
        // SLURM's time limit TERMs every process: the last task above can die of it before our stop arrives.
        var state = Build("a\n#SHOAL barrier\nb\n", slots: 2);
        state.Settle();
        Finish(state, 0, exitCode: -1, signal: Native.SIGTERM, signalled: true);
        Advance(state, TimeSpan.FromMilliseconds(300));
        Assert.Single(_effects.Launched); // the barrier waits: that death may be the stop's doing
        Assert.False(state.Finished);
        state.Stop(Native.SIGTERM);
        state.Settle();
        Assert.True(state.Finished);
        Assert.Single(_effects.Launched);
        Assert.Empty(_effects.Barriers);
        var outcome = state.Outcome(TimeSpan.Zero);
        Assert.Equal((0, 1, 2, 143), (outcome.Failed, outcome.Interrupted, outcome.NotRun, outcome.ExitCode));
        Assert.Null(outcome.StoppedAtBarrier);
    }

    [Fact]
    public void BarrierStopOnFailure_ATaskAboveDiesOfTerm_AndNoStopComes_StopsThereAfterTheRace()
    {
        var state = Build("a\n#SHOAL barrier stop-on-failure\nb\n", slots: 2);
        state.Settle();
        Finish(state, 0, exitCode: -1, signal: Native.SIGTERM, signalled: true);
        Assert.False(state.Finished); // not yet: a stop may be on its way
        Advance(state, TimeSpan.FromSeconds(1));
        Assert.False(state.Finished);
        Advance(state, TimeSpan.FromSeconds(1.5));
        Assert.True(state.Finished);
        Assert.Single(_effects.Launched);
        var outcome = state.Outcome(TimeSpan.Zero);
        Assert.Equal((2, 1), outcome.StoppedAtBarrier);
        Assert.Equal((1, 0, 1), (outcome.Failed, outcome.StopSignal, outcome.ExitCode));
    }

    [Fact]
    public void BarrierStopOnFailure_DeathAndStopInOneBatch_IsAnInterruption_NotAStopAtTheBarrier()
    {
        var state = Build("a\n#SHOAL barrier stop-on-failure\nb\n", slots: 2);
        state.Settle();
        var launch = _effects.Launched.Single();
        state.Exited(new TaskExit(0, launch.Request.Attempt, -1, Native.SIGTERM, 0, 10, launch.Request.Lane, 0, 0, 0, 0, launch.Worker, false, Signalled: true));
        state.Stop(Native.SIGTERM);
        state.Settle();
        Assert.True(state.Finished);
        var outcome = state.Outcome(TimeSpan.Zero);
        Assert.Null(outcome.StoppedAtBarrier);
        Assert.Empty(_effects.Barriers);
        Assert.Equal((0, 1, 143), (outcome.Failed, outcome.Interrupted, outcome.ExitCode));
    }

    private sealed class Effects : IRunEffects
    {
        public List<(int Worker, LaunchRequest Request)> Launched { get; } = [];

        public List<(int Worker, int Task, int Signal)> Signals { get; } = [];

        public List<AttemptRecord> Records { get; } = [];

        public List<int> Dropped { get; } = [];

        public void Launch(int worker, LaunchRequest request) => Launched.Add((worker, request));

        public void Signal(int worker, int task, int signal) => Signals.Add((worker, task, signal));

        public void Record(AttemptRecord record) => Records.Add(record);

        public void DropWorker(int worker) => Dropped.Add(worker);

        public List<int> Released { get; } = [];

        public void ReleaseWorker(int worker) => Released.Add(worker);

        public List<(int Line, int Failed, bool Stopped)> Barriers { get; } = [];

        public void PassedBarrier(int line, int failed, bool stopped) => Barriers.Add((line, failed, stopped));
    }
}
