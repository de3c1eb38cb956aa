using Shoal.Scheduling;
using Shoal.Tasks;

namespace Shoal.Tests.Scheduling;

public class SchedulerTests
{
    private static readonly TaskShape One = TaskShape.Default;
    private static readonly TaskShape FourCpus = new(4, 0, null);
    private static readonly TaskShape OneGpu = new(1, 1, null);

    [Fact]
    public void Schedule_FillsEveryFreeSlotAndNoMore()
    {
        var s = new Scheduler([One]);
        s.AddWorker(0, 3, []);
        for (var i = 0; i < 10; i++)
        {
            s.Enqueue(i, 0);
        }

        var started = new List<Assignment>();
        s.Schedule(started);
        s.AssertInvariants();

        Assert.Equal([0, 1, 2], started.Select(a => a.Task));
        Assert.Equal(3, started.Select(a => a.Lane).Distinct().Count());
        Assert.Equal(7, s.Queued);

        s.Release(1);
        started.Clear();
        s.Schedule(started);
        s.AssertInvariants();
        var next = Assert.Single(started);
        Assert.Equal(3, next.Task);
        Assert.Equal(1, next.Lane); // the lane task 1 freed
    }

    [Fact]
    public void Schedule_LargeTaskWaitsWhileSmallOnesBackfill()
    {
        var s = new Scheduler([One, FourCpus]);
        s.AddWorker(0, 4, []);
        s.Enqueue(0, 0);
        s.Enqueue(1, 1);
        s.Enqueue(2, 0);
        var started = new List<Assignment>();
        s.Schedule(started);
        s.AssertInvariants();

        Assert.Equal([0, 2], started.Select(a => a.Task));
        s.Release(0);
        s.Release(2);
        started.Clear();
        s.Schedule(started);
        var big = Assert.Single(started);
        Assert.Equal(1, big.Task);
        Assert.Equal(4, big.Cpus);
        s.AssertInvariants();
    }

    [Fact]
    public void Schedule_GpuTasks_GetDistinctGpus_AndWaitWhenNoneFree()
    {
        var s = new Scheduler([OneGpu]);
        s.AddWorker(0, 8, ["0", "1"]);
        for (var i = 0; i < 3; i++)
        {
            s.Enqueue(i, 0);
        }

        var started = new List<Assignment>();
        s.Schedule(started);
        s.AssertInvariants();
        Assert.Equal(2, started.Count);
        Assert.Equal(["0", "1"], started.SelectMany(a => a.Gpus).Order());

        s.Release(started[0].Task);
        var freed = started[0].Gpus[0];
        started.Clear();
        s.Schedule(started);
        Assert.Equal([freed], Assert.Single(started).Gpus);
    }

    [Fact]
    public void CouldEverFit_TaskLargerThanEveryWorker_IsFalse()
    {
        var s = new Scheduler([One]);
        s.AddWorker(0, 2, ["0"]);
        Assert.False(s.CouldEverFit(new TaskShape(3, 0, null)));
        Assert.False(s.CouldEverFit(new TaskShape(1, 2, null)));
        Assert.True(s.CouldEverFit(new TaskShape(2, 1, null)));
    }

    [Fact]
    public void RemoveWorker_ReturnsItsRunningTasks()
    {
        var s = new Scheduler([One]);
        s.AddWorker(0, 2, []);
        s.AddWorker(1, 2, []);
        for (var i = 0; i < 4; i++)
        {
            s.Enqueue(i, 0);
        }

        var started = new List<Assignment>();
        s.Schedule(started);
        var onOne = started.Where(a => a.Worker == 1).Select(a => a.Task).Order().ToList();
        Assert.Equal(onOne, s.RemoveWorker(1).Order());
        s.AssertInvariants();
        Assert.Equal(2, s.Running);
    }

    /// <summary>A seeded simulation: random shapes, random completion order, two workers; after every step the
    /// books balance, no lane or GPU is double-booked, and every task runs exactly once.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Simulation_RandomWorkload_EveryTaskOnceNeverOverCapacity(int seed)
    {
        var random = new Random(seed);
        TaskShape[] shapes = [One, new(2, 0, null), new(1, 1, null), new(3, 2, null)];
        var s = new Scheduler(shapes);
        s.AddWorker(0, 4, ["0", "1"]);
        s.AddWorker(1, 6, ["a", "b", "c"]);
        const int count = 3000;
        for (var i = 0; i < count; i++)
        {
            s.Enqueue(i, random.Next(shapes.Length));
        }

        var ran = new int[count];
        var running = new List<Assignment>();
        var started = new List<Assignment>();
        while (s.Queued > 0 || running.Count > 0)
        {
            started.Clear();
            s.Schedule(started);
            foreach (var a in started)
            {
                ran[a.Task]++;
                running.Add(a);
            }

            s.AssertInvariants();
            Assert.True(s.FreeSlots >= 0);
            Assert.NotEmpty(running);
            var finishing = random.Next(1, running.Count + 1);
            for (var k = 0; k < finishing; k++)
            {
                var index = random.Next(running.Count);
                s.Release(running[index].Task);
                running.RemoveAt(index);
            }

            s.AssertInvariants();
        }

        Assert.All(ran, n => Assert.Equal(1, n));
    }
}
