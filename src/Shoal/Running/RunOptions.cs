namespace Shoal.Running;

/// <summary>How a run treats its tasks. <see cref="Grace"/>: time between TERM and KILL (timeouts and stops).</summary>
public sealed record RunOptions
{
    /// <summary>The most retries a task may have (its failure count is kept in one byte per task).</summary>
    public const int MaxRetries = 100;

    public int Retries { get; init; }

    public TimeSpan? Timeout { get; init; }

    public TimeSpan Grace { get; init; } = TimeSpan.FromSeconds(3);

    public bool RetryFailed { get; init; }

    /// <summary>False: GPUs are not managed and tasks' CUDA_VISIBLE_DEVICES is left alone.</summary>
    public bool ManageGpus { get; init; }

    public int Session { get; init; } = 1;

    /// <summary>With the allocation's end known: a task starts only when it is expected to end this long before it
    /// (time to stop the workers, close the journal and submit the next job). See <see cref="DefaultEndMargin"/>.</summary>
    public TimeSpan EndMargin { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Hand back the node of a releasable worker (<see cref="WorkerInfo.Releasable"/>) once it is idle and no
    /// queued task can use it any more (off with --keep-nodes).</summary>
    public bool ReleaseIdleWorkers { get; init; }

    /// <summary>The default <see cref="EndMargin"/>: the grace, plus 10 s, plus 1 % of the job's time limit up to 5
    /// minutes (13.6 s for a 1-minute job with the default 3 s grace, 49 s for 1 hour, 5 min 13 s from 8.3 hours on).</summary>
    public static TimeSpan DefaultEndMargin(TimeSpan grace, TimeSpan? timeLimit) =>
        grace + TimeSpan.FromSeconds(10) + TimeSpan.FromTicks(Math.Min((timeLimit ?? TimeSpan.Zero).Ticks / 100, TimeSpan.FromMinutes(5).Ticks));

    /// <summary>How long a worker may fail to start any process (EAGAIN, ENOMEM, EMFILE) before it is given up:
    /// until then such attempts are not the tasks' failures, they are retried with backoff.</summary>
    public TimeSpan SpawnGiveUp { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>After a stop's KILL, how long to wait for the last exits (a silent remote worker) before recording
    /// the tasks still unaccounted for as interrupted and ending anyway.</summary>
    public TimeSpan StopDrain { get; init; } = TimeSpan.FromSeconds(5);
}
