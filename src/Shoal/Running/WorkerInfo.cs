namespace Shoal.Running;

/// <summary>A place tasks run: a host with slots and GPUs. Local mode has one, id 0.</summary>
public sealed record WorkerInfo(int Id, string Host, int Slots, IReadOnlyList<string> Gpus)
{
    /// <summary>Its node may be handed back to SLURM once it is idle for good (never the leader's node).</summary>
    public bool Releasable { get; init; }
}
