using Shoal.Cluster;
using Shoal.Execution;
using Shoal.Journal;
using Shoal.Tests.Support;

namespace Shoal.Tests.Cluster;

/// <summary>A worker that knows the secret is still not believed blindly: an exit must match an attempt that was
/// started on it (task, attempt and lane), once. One that lies is dropped; its tasks run again elsewhere.</summary>
public sealed class MisbehavingWorkerTests : IDisposable
{
    private readonly TempDir _dir = new();

    public enum Lie
    {
        TaskNeverSent,
        DuplicateExit,
        WrongLane,
        WrongAttempt,
    }

    [Theory]
    [InlineData(Lie.TaskNeverSent)]
    [InlineData(Lie.DuplicateExit)]
    [InlineData(Lie.WrongLane)]
    [InlineData(Lie.WrongAttempt)]
    public async Task Exit_NotMatchingAnAttemptStartedOnTheWorker_DropsTheWorker_RunCompletesOnAGoodOne(Lie lie)
    {
        var lines = string.Concat(Enumerable.Range(0, 10).Select(_ => $"echo $SHOAL_TASK_ID >> {_dir.File("done.log")}\n"));
        await using var cluster = InProcessLeader.Start(_dir, lines);
        var run = cluster.Loop.RunAsync();
        await using var liar = await FakeWorker.JoinAsync(cluster.Port, cluster.Secret, "liar", slots: 2);
        var started = await liar.ReceiveStartsAsync(2);
        var (a, b) = (started[0], started[1]);
        var honest = new TaskExit(a.Task, a.Attempt, 0, 0, 1, 1, a.Lane, 0, 0, 0, 0);
        switch (lie)
        {
            case Lie.TaskNeverSent:
                var other = Enumerable.Range(0, 10).First(t => t != a.Task && t != b.Task);
                await liar.SendExitsAsync(honest with { Task = other, Attempt = 1 });
                break;
            case Lie.DuplicateExit:
                await liar.SendExitsAsync(honest);
                await Eventually.True(() => cluster.Loop.Progress.Succeeded == 1, "the honest exit counted");
                await liar.SendExitsAsync(honest);
                break;
            case Lie.WrongLane:
                await liar.SendExitsAsync(honest with { Lane = b.Lane });
                break;
            case Lie.WrongAttempt:
                await liar.SendExitsAsync(honest with { Attempt = a.Attempt + 1 });
                break;
        }

        // The liar keeps heartbeating: only the leader's check can end its connection this soon.
        Assert.True(await liar.DroppedWithinAsync(TimeSpan.FromSeconds(8)), "the lying worker was not dropped");

        var good = Task.Run(() => WorkerAgent.RunAsync("127.0.0.1", cluster.Port, cluster.Secret, "good", 2, [], _ => { }, CancellationToken.None));
        await Eventually.True(() => File.Exists(_dir.File("done.log")), "the good worker ran a task");
        cluster.Loop.ExpectNoMoreWorkers();
        var outcome = await run.WaitAsync(TimeSpan.FromMinutes(1));
        cluster.Writer.Complete();
        Assert.Equal(0, await good.WaitAsync(TimeSpan.FromSeconds(30)));

        Assert.Equal(10, outcome.Succeeded);
        var succeeded = cluster.Journal.AllAttempts().Where(r => r.State == AttemptState.Succeeded).ToList();
        Assert.Equal(Enumerable.Range(1, 10), succeeded.Select(r => r.TaskId).Order());
        var byLiar = succeeded.Where(r => r.Worker == liar.Id).Select(r => r.TaskId).ToList();
        var ran = File.ReadAllLines(_dir.File("done.log")).Select(int.Parse).Order().ToList();
        if (lie == Lie.DuplicateExit)
        {
            // The first report was a true one (as far as the leader can know): it stands, once; nothing else does.
            Assert.Equal([a.TaskId], byLiar);
            Assert.Equal(Enumerable.Range(1, 10).Where(id => id != a.TaskId), ran);
        }
        else
        {
            Assert.Empty(byLiar);
            Assert.Equal(Enumerable.Range(1, 10), ran);
        }
    }

    public void Dispose() => _dir.Dispose();
}
