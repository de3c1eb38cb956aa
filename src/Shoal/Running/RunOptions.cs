namespace Shoal.Running;

/// <summary>How a run treats its tasks. <see cref="Grace"/>: time between TERM and KILL (timeouts and stops).</summary>
public sealed record RunOptions
{
    public int Retries { get; init; }

    public TimeSpan? Timeout { get; init; }

    public TimeSpan Grace { get; init; } = TimeSpan.FromSeconds(3);

    public bool RetryFailed { get; init; }

    /// <summary>False: GPUs are not managed and tasks' CUDA_VISIBLE_DEVICES is left alone.</summary>
    public bool ManageGpus { get; init; }

    public int Session { get; init; } = 1;
}
