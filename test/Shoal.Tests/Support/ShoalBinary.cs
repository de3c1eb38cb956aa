using System.Diagnostics;

namespace Shoal.Tests.Support;

/// <summary>Runs the real shoal: the AOT binary named by $SHOAL_BIN (CI sets it), else the shoal.dll built beside the tests.</summary>
public static class ShoalBinary
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    /// <summary>The command line that starts shoal: the AOT binary, or dotnet and shoal.dll.</summary>
    public static string[] Command()
    {
        var bin = Environment.GetEnvironmentVariable("SHOAL_BIN");
        return bin is not null ? [bin] : ["dotnet", Path.Combine(AppContext.BaseDirectory, "shoal.dll")];
    }

    public static Process Start(string workDir, IEnumerable<string> args, IDictionary<string, string>? env = null, bool redirectStdin = false) =>
        StartWrapped(workDir, [], args, env, redirectStdin);

    /// <summary>Starts <c>WRAPPER... shoal ARGS...</c> (e.g. unshare, env, setpriv); a wrapper element "{shoal}" is
    /// replaced by the shoal command line, shell-quoted (for <c>sh -c '... exec {shoal} ...'</c>).</summary>
    public static Process StartWrapped(string workDir, IReadOnlyList<string> wrapper, IEnumerable<string> args, IDictionary<string, string>? env = null, bool redirectStdin = false)
    {
        var command = Command();
        var all = wrapper.Any(w => w.Contains("{shoal}", StringComparison.Ordinal))
            ? wrapper.Select(w => w.Replace("{shoal}", string.Join(' ', command.Concat(args).Select(a => "'" + a.Replace("'", "'\\''", StringComparison.Ordinal) + "'")), StringComparison.Ordinal)).ToList()
            : [.. wrapper, .. command, .. args];
        var psi = new ProcessStartInfo
        {
            FileName = all[0],
            WorkingDirectory = workDir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = redirectStdin,
            UseShellExecute = false,
        };
        foreach (var a in all.Skip(1))
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment.Remove("SHOAL_RUN_DIR");
        psi.Environment.Remove("CUDA_VISIBLE_DEVICES");
        psi.Environment.Remove("SLURM_JOB_ID");
        psi.Environment.Remove("SLURM_CPUS_ON_NODE");
        foreach (var (k, v) in env ?? new Dictionary<string, string>())
        {
            psi.Environment[k] = v;
        }

        return Process.Start(psi) ?? throw new InvalidOperationException("cannot start shoal");
    }

    public static async Task<Result> RunAsync(string workDir, params string[] args) => await RunAsync(workDir, args, null, null);

    public static async Task<Result> RunAsync(string workDir, IEnumerable<string> args, IDictionary<string, string>? env, string? stdin) =>
        await RunWrappedAsync(workDir, [], args, env, stdin);

    public static async Task<Result> RunWrappedAsync(string workDir, IReadOnlyList<string> wrapper, IEnumerable<string> args, IDictionary<string, string>? env = null, string? stdin = null)
    {
        using var p = StartWrapped(workDir, wrapper, args, env, stdin is not null);
        if (stdin is not null)
        {
            await p.StandardInput.WriteAsync(stdin);
            p.StandardInput.Close();
        }

        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await p.WaitForExitAsync(timeout.Token);
        return new Result(p.ExitCode, await stdout, await stderr);
    }
}
