using System.Diagnostics;
using System.Globalization;

namespace Shoal.Tests.EndToEnd;

/// <summary>
/// A real SLURM cluster of two nodes (network namespaces, 4 CPUs and 2 fake GPUs each), started by the project's
/// own ci/slurm/start-cluster (root; it installs slurm and munge when missing). Shared by the SLURM tests.
/// A cluster that was already up (as .ci/run starts it) is used and left running; one this fixture started is
/// stopped with ci/slurm/stop-cluster when xunit disposes the fixture, after the collection's tests.
/// </summary>
public sealed class SlurmCluster : IDisposable
{
    private bool _started;

    public SlurmCluster()
    {
        Root = Support.Repository.Root ?? throw new InvalidOperationException("cannot find the repository root (Shoal.slnx)");
        var r = Run("bash", [Path.Combine(Root, "ci/slurm/start-cluster")], new() { ["NODES"] = "2", ["CPUS"] = "4", ["GPUS"] = "2" }, TimeSpan.FromMinutes(5));

        // start-cluster's stdout says "start-cluster: starting" when this call (re)starts the cluster, and
        // "start-cluster: already-up" when it was running before (then it is not ours to stop).
        _started = r.Output.Split('\n').Any(l => l.Trim() == "start-cluster: starting");
        if (r.ExitCode != 0)
        {
            Dispose(); // a half-started cluster of ours: xunit does not dispose a fixture whose constructor threw
            throw new InvalidOperationException($"ci/slurm/start-cluster failed ({r.ExitCode}): {r.Output}");
        }
    }

    public string Root { get; }

    /// <summary>Stops the cluster if this fixture started it; a cluster that was already up keeps running.</summary>
    public void Dispose()
    {
        if (!_started)
        {
            return;
        }

        _started = false;
        var r = Run("bash", [Path.Combine(Root, "ci/slurm/stop-cluster")], timeout: TimeSpan.FromMinutes(2));
        if (r.ExitCode != 0)
        {
            throw new InvalidOperationException($"ci/slurm/stop-cluster failed ({r.ExitCode}): {r.Output}");
        }
    }

    /// <summary>The shell words that start shoal inside a job: the AOT binary of $SHOAL_BIN, else dotnet shoal.dll.</summary>
    public static string ShoalCommand =>
        Environment.GetEnvironmentVariable("SHOAL_BIN") is { } bin ? bin : $"{Environment.ProcessPath} {Path.Combine(AppContext.BaseDirectory, "shoal.dll")}";

    public static (int ExitCode, string Output) Run(string file, IEnumerable<string> args, Dictionary<string, string>? env = null, TimeSpan? timeout = null, string? workDir = null)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (workDir is not null)
        {
            psi.WorkingDirectory = workDir;
        }

        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        foreach (var (k, v) in env ?? [])
        {
            psi.Environment[k] = v;
        }

        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout ?? TimeSpan.FromMinutes(2)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish");
        }

        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>Submits a batch script running <paramref name="body"/> in <paramref name="workDir"/>; returns the job id.</summary>
    public static string Submit(string workDir, string body, params string[] sbatchArgs)
    {
        var script = Path.Combine(workDir, "job.sh");
        File.WriteAllText(script, "#!/bin/bash\n" + body + "\n");
        var r = Run("sbatch", ["--parsable", "-D", workDir, "-o", Path.Combine(workDir, "job.out"), .. sbatchArgs, script]);
        return r.ExitCode == 0 ? r.Output.Trim().Split(';')[0] : throw new InvalidOperationException("sbatch failed: " + r.Output);
    }

    public static bool Running(string job) => Run("squeue", ["-h", "-j", job, "-o", "%i"]).Output.Trim().Length > 0;

    public static List<string> Steps(string job) =>
        [.. Run("squeue", ["-h", "-s", "-j", job, "-o", "%i"]).Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];

    public static async Task WaitAsync(string job, TimeSpan timeout, Action? whileRunning = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (Running(job))
        {
            if (DateTime.UtcNow > deadline)
            {
                Run("scancel", [job]);
                throw new TimeoutException($"job {job} still running after {timeout}");
            }

            whileRunning?.Invoke();
            await Task.Delay(100);
        }
    }

    /// <summary>Runs shoal here (a login node) in <paramref name="workDir"/>: stdout first, then stderr.</summary>
    public static (int ExitCode, string Output) Shoal(string workDir, params string[] args)
    {
        var words = ShoalCommand.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return Run(words[0], [.. words.Skip(1), .. args], timeout: TimeSpan.FromMinutes(1), workDir: workDir);
    }

    /// <summary>Every job named <paramref name="name"/> that slurmctld still knows (pending, running, and those ended
    /// within MinJobAge), as (id, state).</summary>
    public static List<(string Id, string State)> JobsNamed(string name) =>
        [.. Run("squeue", ["-h", "-t", "all", "-n", name, "-o", "%i %T"]).Output
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(l => l.Split(' '))
            .Select(p => (p[0], p[1]))];

    /// <summary>The exit code of the batch script of an ended job (scontrol's ExitCode=CODE:SIGNAL), or null.</summary>
    public static int? ExitCode(string job)
    {
        var text = Run("scontrol", ["show", "job", job]).Output;
        var at = text.IndexOf(" ExitCode=", StringComparison.Ordinal);
        if (at < 0)
        {
            return null;
        }

        var value = text[(at + " ExitCode=".Length)..].Split(':')[0];
        return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var code) ? code : null;
    }

    /// <summary>Cancels every job named <paramref name="name"/> (a test's leftovers).</summary>
    public static void CancelNamed(string name) => Run("scancel", ["-n", name]);

    /// <summary>The pid of the shoal worker running on <paramref name="node"/> for <paramref name="job"/>, or null.</summary>
    public static int? WorkerPid(string job, string node) =>
        FindShoal(job, cmd => cmd.Contains("\0worker\0--leader\0", StringComparison.Ordinal), node);

    /// <summary>The pid of the leader (shoal run in the batch script) of <paramref name="job"/>, or null.</summary>
    public static int? LeaderPid(string job) => FindShoal(job, cmd => cmd.Contains("\0run\0", StringComparison.Ordinal), null);

    public static bool Alive(int pid) => Support.Processes.Alive(pid);

    private static int? FindShoal(string job, Func<string, bool> command, string? node)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            try
            {
                var cmd = File.ReadAllText(Path.Combine(dir, "cmdline"));
                if (Path.GetFileName(cmd.Split('\0')[0]) == "srun" || !cmd.Contains("shoal", StringComparison.Ordinal) || !command(cmd) || !Alive(pid))
                {
                    continue;
                }

                var env = File.ReadAllText(Path.Combine(dir, "environ")).Split('\0');
                if ((node is null || env.Contains($"SLURMD_NODENAME={node}")) && env.Contains($"SLURM_JOB_ID={job}"))
                {
                    return pid;
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return null;
    }
}

[CollectionDefinition("slurm")]
public sealed class SlurmTestGroup : ICollectionFixture<SlurmCluster>;
