using System.Globalization;

namespace Shoal.Cluster;

/// <summary>What this machine offers tasks: CPU slots and GPU ids, read from the process and its environment.</summary>
public static class LocalMachine
{
    /// <summary>This machine's name as SLURM knows it inside a job (<c>SLURMD_NODENAME</c>: what a shrink names and
    /// what tasks see as SHOAL_NODE), else its host name.</summary>
    public static string NodeName(Func<string, string?> env)
    {
        ArgumentNullException.ThrowIfNull(env);
        return env("SLURMD_NODENAME") is { Length: > 0 } node ? node : Environment.MachineName;
    }

    /// <summary><c>SLURM_CPUS_ON_NODE</c> when set; otherwise the CPUs this process may use
    /// (<see cref="Environment.ProcessorCount"/> honours CPU affinity and the cgroup CPU quota).</summary>
    public static int Slots(Func<string, string?> env)
    {
        ArgumentNullException.ThrowIfNull(env);
        if (int.TryParse(env("SLURM_CPUS_ON_NODE"), NumberStyles.None, CultureInfo.InvariantCulture, out var slurm) && slurm > 0)
        {
            return slurm;
        }

        return Environment.ProcessorCount;
    }

    /// <summary>GPU ids from <c>CUDA_VISIBLE_DEVICES</c>, else <c>SLURM_STEP_GPUS</c>, else <c>SLURM_JOB_GPUS</c>.
    /// CUDA_VISIBLE_DEVICES wins because its ids are the ones CUDA accepts in this process's context.</summary>
    public static IReadOnlyList<string> Gpus(Func<string, string?> env)
    {
        ArgumentNullException.ThrowIfNull(env);
        foreach (var name in new[] { "CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS" })
        {
            var value = env(name);
            if (value is null)
            {
                continue;
            }

            return ParseGpuList(value);
        }

        return [];
    }

    public static IReadOnlyList<string> ParseGpuList(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (value.Equals("NoDevFiles", StringComparison.OrdinalIgnoreCase))
        {
            return [];
        }

        var ids = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (ids.Any(id => id.Any(c => char.IsWhiteSpace(c) || c == '=')))
        {
            throw new FormatException($"'{value}' is not a comma-separated list of GPU ids");
        }

        return ids.Distinct(StringComparer.Ordinal).ToList();
    }
}
