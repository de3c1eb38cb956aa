using System.Globalization;
using Shoal.Execution;

namespace Shoal.Cluster;

/// <summary>
/// What SLURM says about the running job that the batch environment does not carry (in 22.05: its end; newer
/// releases set <c>SLURM_JOB_END_TIME</c>), and the two things a run asks of SLURM: submit the next job of a chain,
/// shrink the job. Every call runs a short SLURM command and never throws for SLURM's sake: a failure is a message.
/// </summary>
public static class SlurmJob
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(30);

    /// <summary>The job's end from <c>SLURM_JOB_END_TIME</c> (epoch seconds) when set, else null.</summary>
    public static DateTimeOffset? EndFromEnvironment(Func<string, string?> env)
    {
        ArgumentNullException.ThrowIfNull(env);
        return long.TryParse(env("SLURM_JOB_END_TIME"), NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds > 0
            ? DateTimeOffset.FromUnixTimeSeconds(seconds)
            : null;
    }

    /// <summary>The job's end and time limit as squeue tells them (<c>%e|%l</c>: local time without a zone, and
    /// [days-]hours:minutes:seconds); (null, null) for a job without a limit or when squeue cannot say.</summary>
    public static async Task<(DateTimeOffset? End, TimeSpan? Limit)> QueryAsync(string jobId, string scratch)
    {
        if (ChildProcess.FindProgram("squeue") is not { } squeue)
        {
            return (null, null);
        }

        var (code, output) = await ChildProcess.CaptureAsync(squeue, ["-h", "-j", jobId, "-o", "%e|%l"], scratch, CommandTimeout).ConfigureAwait(false);
        if (code != 0)
        {
            return (null, null);
        }

        var parts = output.Trim().Split('|');
        return parts.Length == 2 ? (ParseLocalTime(parts[0]), ParseLimit(parts[1])) : (null, null);
    }

    /// <summary>The job's state as squeue tells it (PENDING, RUNNING, COMPLETING...), or null when squeue no longer
    /// lists it or cannot say.</summary>
    public static async Task<string?> StateAsync(string jobId, string scratch)
    {
        if (ChildProcess.FindProgram("squeue") is not { } squeue)
        {
            return null;
        }

        var (code, output) = await ChildProcess.CaptureAsync(squeue, ["-h", "-j", jobId, "-o", "%T"], scratch, CommandTimeout).ConfigureAwait(false);
        var state = output.Trim();
        return code == 0 && state.Length > 0 ? state : null;
    }

    /// <summary>SLURM's <c>2026-11-28T05:30:35</c> in this machine's time zone; null for NONE, Unknown, N/A.</summary>
    public static DateTimeOffset? ParseLocalTime(string text) =>
        DateTime.TryParseExact(text.Trim(), "yyyy-MM-dd'T'HH:mm:ss", CultureInfo.InvariantCulture, DateTimeStyles.AssumeLocal, out var local)
            ? new DateTimeOffset(local)
            : null;

    /// <summary>SLURM's time limit format: <c>M</c>, <c>M:S</c>, <c>H:M:S</c>, <c>D-H</c>, <c>D-H:M</c>, <c>D-H:M:S</c>;
    /// null for UNLIMITED, NOT_SET, INVALID.</summary>
    public static TimeSpan? ParseLimit(string text)
    {
        text = text.Trim();
        var days = 0;
        var dash = text.IndexOf('-', StringComparison.Ordinal);
        if (dash > 0)
        {
            if (!int.TryParse(text.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out days))
            {
                return null;
            }

            text = text[(dash + 1)..];
        }

        var fields = text.Split(':');
        var n = new int[fields.Length];
        for (var i = 0; i < fields.Length; i++)
        {
            if (!int.TryParse(fields[i], NumberStyles.None, CultureInfo.InvariantCulture, out n[i]))
            {
                return null;
            }
        }

        var (h, m, s) = (dash > 0, n.Length) switch
        {
            (false, 1) => (0, n[0], 0),
            (false, 2) => (0, n[0], n[1]),
            (false, 3) => (n[0], n[1], n[2]),
            (true, 1) => (n[0], 0, 0),
            (true, 2) => (n[0], n[1], 0),
            (true, 3) => (n[0], n[1], n[2]),
            _ => (-1, 0, 0),
        };
        return h < 0 ? null : new TimeSpan(days, h, m, s);
    }

    /// <summary>Every SLURM_* variable but SLURM_CONF: a job submitted from inside a job must not inherit them
    /// (SLURM_NTASKS and SLURM_NTASKS_PER_NODE of the old job make srun fail in the new one).</summary>
    public static IEnumerable<string> InheritedVariables() =>
        Environment.GetEnvironmentVariables().Keys.Cast<string>().Where(k => k.StartsWith("SLURM_", StringComparison.Ordinal) && k != "SLURM_CONF");

    /// <summary>Submits <paramref name="script"/> with sbatch, starting after <paramref name="afterJob"/> ends (when
    /// given); returns the new job id, or an error message.</summary>
    public static async Task<(string? JobId, string? Error)> SubmitAsync(string script, IReadOnlyList<string> sbatchOptions, string? afterJob, string scratch)
    {
        if (ChildProcess.FindProgram("sbatch") is not { } sbatch)
        {
            return (null, "sbatch is not on PATH");
        }

        var args = new List<string> { "--parsable" };
        if (afterJob is not null)
        {
            args.Add($"--dependency=afterany:{afterJob}");
        }

        args.AddRange(sbatchOptions);
        args.Add(script);
        var (code, output) = await ChildProcess.CaptureAsync(sbatch, args, scratch, CommandTimeout, InheritedVariables()).ConfigureAwait(false);
        var id = output.Trim().Split(';')[0]; // --parsable: "ID" or "ID;CLUSTER"
        return code == 0 && id.Length > 0 && id.All(char.IsAsciiDigit)
            ? (id, null)
            : (null, $"sbatch {string.Join(' ', args)} failed (exit {code}){(output.Length > 0 ? ": " + output.Trim() : "")}");
    }

    /// <summary>Writes the job's batch script to <paramref name="path"/> (scontrol write batch_script).</summary>
    public static async Task<string?> SaveBatchScriptAsync(string jobId, string path, string scratch)
    {
        if (ChildProcess.FindProgram("scontrol") is not { } scontrol)
        {
            return "scontrol is not on PATH";
        }

        var (code, output) = await ChildProcess.CaptureAsync(scontrol, ["write", "batch_script", jobId, path], scratch, CommandTimeout).ConfigureAwait(false);
        return code == 0 && File.Exists(path) ? null : $"scontrol write batch_script {jobId} failed (exit {code}): {output.Trim()}";
    }

    /// <summary>Shrinks the job to <paramref name="keep"/> (scontrol update NodeList=…), run in
    /// <paramref name="directory"/> (scontrol writes slurm_job_ID_resize.sh there); returns an error message or null.</summary>
    public static async Task<string?> ShrinkAsync(string jobId, IReadOnlyList<string> keep, string directory, string scratch)
    {
        if (ChildProcess.FindProgram("scontrol") is not { } scontrol)
        {
            return "scontrol is not on PATH";
        }

        // posix_spawn has no working directory of its own before glibc 2.29: a shell changes it, the names travel as
        // arguments, never inside the script.
        var (code, output) = await ChildProcess.CaptureAsync(
            "/bin/sh",
            ["-c", "cd \"$1\" && shift && exec \"$@\"", "sh", directory, scontrol, "update", $"JobId={jobId}", $"NodeList={Hostlist.Compress(keep)}"],
            scratch,
            CommandTimeout).ConfigureAwait(false);
        return code == 0 ? null : $"scontrol update JobId={jobId} NodeList={Hostlist.Compress(keep)} failed (exit {code}){(output.Length > 0 ? ": " + output.Trim() : "")}";
    }
}
