using Shoal.Tasks;

namespace Shoal.Scheduling;

/// <summary>
/// Decides which queued task runs where. Pure: no I/O, no clock, no threads; one loop owns it.
/// Tasks wait in one FIFO queue per shape (cpus, gpus); <see cref="Schedule"/> repeatedly takes the oldest head
/// that fits on some worker, so small tasks backfill around a large one that does not fit yet (no reservation:
/// a stream of small tasks can delay a large one, documented in README).
/// </summary>
public sealed class Scheduler
{
    private readonly IReadOnlyList<TaskShape> _shapes;
    private readonly Queue<(int Task, int Seq)>[] _queues;
    private readonly List<WorkerSlots> _workers = [];
    private readonly Dictionary<int, WorkerSlots> _byId = [];
    private readonly Dictionary<int, Assignment> _running = [];
    private readonly bool[] _held;
    private int _sequence;
    private int _cursor;

    public Scheduler(IReadOnlyList<TaskShape> shapes)
    {
        _shapes = shapes;
        _queues = new Queue<(int, int)>[shapes.Count];
        _held = new bool[shapes.Count];
        for (var i = 0; i < _queues.Length; i++)
        {
            _queues[i] = new Queue<(int, int)>();
        }
    }

    public int Queued { get; private set; }

    public int Running => _running.Count;

    public int TotalSlots => _workers.Sum(w => w.Slots);

    public int FreeSlots => _workers.Sum(w => w.FreeLanes);

    public void AddWorker(int id, int slots, IReadOnlyList<string> gpus)
    {
        if (_byId.ContainsKey(id))
        {
            throw new InvalidOperationException($"worker {id} added twice");
        }

        var worker = new WorkerSlots(id, slots, gpus);
        _workers.Add(worker);
        _byId[id] = worker;
    }

    /// <summary>Removes a worker; returns the tasks that were running on it (their resources are gone with it).</summary>
    public List<int> RemoveWorker(int id)
    {
        var lost = _running.Where(kv => kv.Value.Worker == id).Select(kv => kv.Key).ToList();
        foreach (var task in lost)
        {
            _running.Remove(task);
        }

        _workers.RemoveAll(w => w.Id == id);
        _byId.Remove(id);
        return lost;
    }

    /// <summary>Pauses or resumes a worker: while paused it gets no new tasks; its running tasks are unaffected.</summary>
    public void Pause(int id, bool paused)
    {
        if (_byId.GetValueOrDefault(id) is { } w)
        {
            w.Paused = paused;
        }
    }

    /// <summary>Lets a worker have at most <paramref name="lanes"/> lanes busy (int.MaxValue: all its slots); an
    /// idle worker still takes one task. Returns the lanes busy on it now.</summary>
    public int Limit(int id, int lanes)
    {
        if (_byId.GetValueOrDefault(id) is not { } w)
        {
            return 0;
        }

        w.Ceiling = lanes;
        return w.Slots - w.FreeLanes;
    }

    /// <summary>The worker's ceiling (see <see cref="Limit"/>) and its lanes busy now.</summary>
    public (int Ceiling, int Busy, int Slots) Load(int id) =>
        _byId.GetValueOrDefault(id) is { } w ? (w.Ceiling, w.Slots - w.FreeLanes, w.Slots) : (int.MaxValue, 0, 0);

    /// <summary>Holds a shape's queue (its tasks stay queued but none starts) or releases it: the run state holds
    /// the tasks that could not finish before the allocation ends.</summary>
    public void Hold(int shapeIndex, bool held) => _held[shapeIndex] = held;

    /// <summary>True when some queued task is in a queue that is not held.</summary>
    public bool AnyStartable()
    {
        for (var s = 0; s < _queues.Length; s++)
        {
            if (!_held[s] && _queues[s].Count > 0)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>True when the worker runs nothing.</summary>
    public bool IsIdle(int id) => _byId.GetValueOrDefault(id) is { } w && w.FreeLanes == w.Slots;

    /// <summary>True when some queued task, held or not, could ever run on the worker.</summary>
    public bool AnyQueuedFor(int id)
    {
        if (_byId.GetValueOrDefault(id) is not { } worker)
        {
            return false;
        }

        for (var s = 0; s < _queues.Length; s++)
        {
            if (_queues[s].Count > 0 && worker.CouldEverFit(_shapes[s].Cpus, _shapes[s].Gpus))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>True when the worker is large enough for the shape, busy or not.</summary>
    public bool CouldEverFit(int id, TaskShape shape) => _byId.GetValueOrDefault(id) is { } w && w.CouldEverFit(shape.Cpus, shape.Gpus);

    /// <summary>True when a queued task of the shape waits.</summary>
    public bool HasQueued(int shapeIndex) => _queues[shapeIndex].Count > 0;

    /// <summary>True when some worker is large enough for the shape, busy or not.</summary>
    public bool CouldEverFit(TaskShape shape) => _workers.Any(w => w.CouldEverFit(shape.Cpus, shape.Gpus));

    /// <summary>Sizes the queue of a shape for <paramref name="count"/> tasks at once (a million must not grow by doubling).</summary>
    public void Reserve(int shapeIndex, int count) => _queues[shapeIndex].EnsureCapacity(count);

    public void Enqueue(int task, int shapeIndex)
    {
        _queues[shapeIndex].Enqueue((task, _sequence++));
        Queued++;
    }

    /// <summary>Drops every queued task (used when the run stops); returns how many were dropped.</summary>
    public int ClearQueue()
    {
        var n = Queued;
        foreach (var q in _queues)
        {
            q.Clear();
        }

        Queued = 0;
        return n;
    }

    public Assignment? RunningOn(int task) => _running.GetValueOrDefault(task);

    /// <summary>Frees the resources of a task that ended.</summary>
    public Assignment Release(int task)
    {
        if (!_running.Remove(task, out var a))
        {
            throw new InvalidOperationException($"task index {task} is not running");
        }

        _byId.GetValueOrDefault(a.Worker)?.Give(a);
        return a;
    }

    /// <summary>Fills free resources with queued tasks; appends the decisions to <paramref name="output"/>.</summary>
    public void Schedule(List<Assignment> output)
    {
        while (Queued > 0)
        {
            var best = -1;
            WorkerSlots? where = null;
            var bestSeq = int.MaxValue;
            for (var s = 0; s < _queues.Length; s++)
            {
                if (_held[s] || _queues[s].Count == 0 || !_queues[s].TryPeek(out var head) || head.Seq >= bestSeq)
                {
                    continue;
                }

                var w = FindWorker(_shapes[s]);
                if (w is not null)
                {
                    best = s;
                    bestSeq = head.Seq;
                    where = w;
                }
            }

            if (best < 0)
            {
                return;
            }

            var (task, _) = _queues[best].Dequeue();
            Queued--;
            var shape = _shapes[best];
            var (lanes, gpus) = where!.Take(shape.Cpus, shape.Gpus);
            var assignment = new Assignment(task, where.Id, lanes, gpus);
            _running.Add(task, assignment);
            output.Add(assignment);
        }
    }

    private WorkerSlots? FindWorker(TaskShape shape)
    {
        var n = _workers.Count;
        for (var k = 0; k < n; k++)
        {
            var i = (_cursor + k) % n;
            var w = _workers[i];
            if (w.Fits(shape.Cpus, shape.Gpus))
            {
                // Stay on a worker while it has room: fills one node's free slots in one batch message.
                _cursor = i;
                return w;
            }
        }

        return null;
    }

    /// <summary>Checks that the books balance; tests call it after every step.</summary>
    public void AssertInvariants()
    {
        foreach (var w in _workers)
        {
            w.AssertInvariants();
            var lanes = _running.Values.Where(a => a.Worker == w.Id).Sum(a => a.Lanes.Length);
            if (lanes != w.Slots - w.FreeLanes)
            {
                throw new InvalidOperationException($"worker {w.Id}: {lanes} lanes held by running tasks, {w.Slots - w.FreeLanes} busy");
            }

            var gpus = _running.Values.Where(a => a.Worker == w.Id).SelectMany(a => a.Gpus).ToList();
            if (gpus.Count != gpus.Distinct().Count())
            {
                throw new InvalidOperationException($"worker {w.Id}: a GPU is held by two running tasks");
            }
        }

        if (Queued != _queues.Sum(q => q.Count))
        {
            throw new InvalidOperationException("queued count disagrees with the queues");
        }
    }
}
