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

    /// <summary>How long a worker may fail to start any process (EAGAIN, ENOMEM, EMFILE) before it is given up:
    /// until then such attempts are not the tasks' failures, they are retried with backoff.</summary>
    public TimeSpan SpawnGiveUp { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>After a stop's KILL, how long to wait for the last exits (a silent remote worker) before recording
    /// the tasks still unaccounted for as interrupted and ending anyway.</summary>
    public TimeSpan StopDrain { get; init; } = TimeSpan.FromSeconds(5);
}
