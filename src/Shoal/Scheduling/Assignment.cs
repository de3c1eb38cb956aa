namespace Shoal.Scheduling;

/// <summary>The scheduler's decision: run task <see cref="Task"/> on worker <see cref="Worker"/>, on these CPU
/// lanes (slot numbers; the first names the task's log) and these GPU ids.</summary>
public sealed record Assignment(int Task, int Worker, int[] Lanes, string[] Gpus)
{
    public int Lane => Lanes[0];

    public int Cpus => Lanes.Length;
}
