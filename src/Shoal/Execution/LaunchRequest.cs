namespace Shoal.Execution;

/// <summary>One attempt of one task to start. <see cref="Gpus"/> null: GPUs are not managed, leave
/// CUDA_VISIBLE_DEVICES alone; empty: hide every GPU from the task.</summary>
public sealed record LaunchRequest(int Task, int TaskId, int Attempt, byte[] Command, int Lane, int Cpus, string[]? Gpus);
