using System.Diagnostics;

namespace Shoal.Tests.Support;

/// <summary>Runs the real shoal: the AOT binary named by $SHOAL_BIN (CI sets it), else the shoal.dll built beside the tests.</summary>
public static class ShoalBinary
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Process Start(string workDir, IEnumerable<string> args, IDictionary<string, string>? env = null, bool redirectStdin = false)
    {
        var bin = Environment.GetEnvironmentVariable("SHOAL_BIN");
        var psi = new ProcessStartInfo
        {
            FileName = bin ?? "dotnet",
            WorkingDirectory = workDir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = redirectStdin,
            UseShellExecute = false,
        };
        if (bin is null)
        {
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "shoal.dll"));
        }

        foreach (var a in args)
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

    public static async Task<Result> RunAsync(string workDir, IEnumerable<string> args, IDictionary<string, string>? env, string? stdin)
    {
        using var p = Start(workDir, args, env, stdin is not null);
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
