namespace Shoal.Scheduling;

/// <summary>One worker's CPU lanes and GPUs, as the scheduler sees them.</summary>
internal sealed class WorkerSlots
{
    private readonly bool[] _laneBusy;
    private readonly bool[] _gpuBusy;
    private readonly int[][] _singleLanes;

    public WorkerSlots(int id, int slots, IReadOnlyList<string> gpus)
    {
        Id = id;
        _laneBusy = new bool[slots];
        Gpus = [.. gpus];
        _gpuBusy = new bool[Gpus.Length];
        FreeLanes = slots;
        FreeGpus = Gpus.Length;
        _singleLanes = new int[slots][];
        for (var i = 0; i < slots; i++)
        {
            _singleLanes[i] = [i];
        }
    }

    public int Id { get; }

    public string[] Gpus { get; }

    public int Slots => _laneBusy.Length;

    public int FreeLanes { get; private set; }

    public int FreeGpus { get; private set; }

    /// <summary>A paused worker gets no new tasks (it could not start processes; the run loop backs off).</summary>
    public bool Paused { get; set; }

    /// <summary>At most this many lanes busy at once, below <see cref="Slots"/> while the machine refuses more
    /// processes (a process limit); an idle worker always takes a task that fits its slots.</summary>
    public int Ceiling { get; set; } = int.MaxValue;

    public bool Fits(int cpus, int gpus) =>
        !Paused && FreeLanes >= cpus && FreeGpus >= gpus && (FreeLanes == Slots || Slots - FreeLanes + cpus <= Ceiling);

    public bool CouldEverFit(int cpus, int gpus) => Slots >= cpus && Gpus.Length >= gpus;

    public (int[] Lanes, string[] Gpus) Take(int cpus, int gpus)
    {
        int[] lanes;
        if (cpus == 1)
        {
            var lane = Array.IndexOf(_laneBusy, false);
            _laneBusy[lane] = true;
            lanes = _singleLanes[lane];
        }
        else
        {
            lanes = new int[cpus];
            var n = 0;
            for (var i = 0; n < cpus; i++)
            {
                if (!_laneBusy[i])
                {
                    _laneBusy[i] = true;
                    lanes[n++] = i;
                }
            }
        }

        FreeLanes -= cpus;
        var ids = gpus == 0 ? [] : new string[gpus];
        for (int i = 0, n = 0; n < gpus; i++)
        {
            if (!_gpuBusy[i])
            {
                _gpuBusy[i] = true;
                ids[n++] = Gpus[i];
            }
        }

        FreeGpus -= gpus;
        return (lanes, ids);
    }

    public void Give(Assignment a)
    {
        foreach (var lane in a.Lanes)
        {
            if (!_laneBusy[lane])
            {
                throw new InvalidOperationException($"lane {lane} of worker {Id} released twice");
            }

            _laneBusy[lane] = false;
        }

        FreeLanes += a.Lanes.Length;
        foreach (var gpu in a.Gpus)
        {
            var i = Array.IndexOf(Gpus, gpu);
            if (!_gpuBusy[i])
            {
                throw new InvalidOperationException($"GPU {gpu} of worker {Id} released twice");
            }

            _gpuBusy[i] = false;
        }

        FreeGpus += a.Gpus.Length;
    }

    public void AssertInvariants()
    {
        var busy = _laneBusy.Count(b => b);
        if (busy != Slots - FreeLanes || _gpuBusy.Count(b => b) != Gpus.Length - FreeGpus)
        {
            throw new InvalidOperationException($"worker {Id}: free counts disagree with busy lanes/GPUs");
        }
    }
}
