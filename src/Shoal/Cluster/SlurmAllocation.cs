using System.Globalization;

namespace Shoal.Cluster;

/// <summary>What SLURM gave the job, read from the batch script's environment.</summary>
public sealed record SlurmAllocation(string JobId, IReadOnlyList<string> Nodes, IReadOnlyList<int> CpusPerNode, int GpusPerNode, int? Ntasks, int? CpusPerTask)
{
    /// <summary>The allocation, or null outside SLURM (no SLURM_JOB_ID). Throws <see cref="FormatException"/> for values
    /// SLURM would not write, naming the variable.</summary>
    public static SlurmAllocation? FromEnvironment(Func<string, string?> env)
    {
        ArgumentNullException.ThrowIfNull(env);
        var job = env("SLURM_JOB_ID");
        if (string.IsNullOrEmpty(job))
        {
            return null;
        }

        var nodelist = env("SLURM_JOB_NODELIST") ?? env("SLURM_NODELIST")
            ?? throw new FormatException("SLURM_JOB_ID is set but SLURM_JOB_NODELIST is not");
        var nodes = Wrap("SLURM_JOB_NODELIST", nodelist, Hostlist.Expand);
        var cpusText = env("SLURM_JOB_CPUS_PER_NODE") ?? throw new FormatException("SLURM_JOB_CPUS_PER_NODE is not set");
        var cpus = Wrap("SLURM_JOB_CPUS_PER_NODE", cpusText, Hostlist.ExpandCounts);
        if (cpus.Count == 1 && nodes.Count > 1)
        {
            cpus = [.. Enumerable.Repeat(cpus[0], nodes.Count)];
        }

        if (cpus.Count != nodes.Count)
        {
            throw new FormatException($"SLURM_JOB_CPUS_PER_NODE '{cpusText}' gives {cpus.Count} counts for {nodes.Count} nodes ('{nodelist}')");
        }

        var gpus = 0;
        if (Int(env("SLURM_GPUS_ON_NODE")) is { } onNode)
        {
            gpus = onNode;
        }
        else if (env("SLURM_JOB_GPUS") is { Length: > 0 } jobGpus)
        {
            gpus = LocalMachine.ParseGpuList(jobGpus).Count;
        }

        return new SlurmAllocation(job, nodes, cpus, gpus, Int(env("SLURM_NTASKS")), Int(env("SLURM_CPUS_PER_TASK")));
    }

    private static int? Int(string? s) => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : null;

    private static T Wrap<T>(string name, string value, Func<string, T> parse)
    {
        try
        {
            return parse(value);
        }
        catch (FormatException e)
        {
            throw new FormatException($"{name}='{value}': {e.Message}", e);
        }
    }

    public string Describe() =>
        $"SLURM job {JobId}: {Nodes.Count} node{(Nodes.Count == 1 ? "" : "s")} {Hostlist.Compress(Nodes)}, CPUs per node {string.Join(',', CpusPerNode)}, GPUs per node {GpusPerNode}"
        + (Ntasks is { } n ? $", ntasks {n}" : "") + (CpusPerTask is { } c ? $", cpus-per-task {c}" : "");
}
