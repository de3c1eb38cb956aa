namespace Shoal.Tasks;

/// <summary>What a task asks for: CPU slots, GPUs and its own timeout (null: the run's default).</summary>
public readonly record struct TaskShape(int Cpus, int Gpus, TimeSpan? Timeout)
{
    public static readonly TaskShape Default = new(1, 0, null);

    public override string ToString() =>
        $"cpus={Cpus} gpus={Gpus}" + (Timeout is { } t ? $" timeout={(long)t.TotalMilliseconds}ms" : "");
}
