using System.Diagnostics;
using System.Globalization;
using Shoal.Tests.EndToEnd;
using Shoal.Tests.Support;

namespace Shoal.Tests.Cluster;

/// <summary>The real <c>shoal worker</c> process against an in-process leader.</summary>
public sealed class WorkerProcessTests : IDisposable
{
    private readonly TempDir _dir = new();

    [Fact]
    public async Task Worker_SecretOnStdin_Joins_NoEnvironOrCommandLineOfAnyProcessHoldsIt()
    {
        // The task looks for the secret's value in its own environment and in every environ and command line it can
        // read (its parent, the worker, included), without putting the value on any command line itself (grep -f).
        File.WriteAllText(_dir.File("check.sh"), """
            hits=""
            env | grep -qF -f secret.txt && hits+=" own-env"
            for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do
              grep -qaF -f secret.txt "$f" 2>/dev/null && hits+=" $f"
            done
            tr '\0' '\n' </proc/$PPID/environ | grep -q '^SHOAL_SECRET=' && hits+=" SHOAL_SECRET"
            worker=no; p=$$
            while [ "$p" -gt 1 ]; do
              tr '\0' ' ' </proc/$p/cmdline | grep -q ' worker --leader ' && { worker=yes; tr '\0' '\n' </proc/$p/environ | grep -q = && worker=yes-environ-read; }
              p=$(sed 's/.*) //' /proc/$p/stat | cut -d' ' -f2)
            done
            echo "$SHOAL_TASK_ID worker=$worker hits:$hits" >> result.log
            """);
        await using var cluster = InProcessLeader.Start(_dir, string.Concat(Enumerable.Range(0, 4).Select(_ => $"cd {_dir.Path} && bash check.sh\n")));
        File.WriteAllText(_dir.File("secret.txt"), Convert.ToBase64String(cluster.Secret) + "\n");
        var run = cluster.Loop.RunAsync();

        using var worker = ShoalBinary.Start(_dir.Path, ["worker", "--leader", $"127.0.0.1:{cluster.Port.ToString(CultureInfo.InvariantCulture)}"], redirectStdin: true);
        var stderr = worker.StandardError.ReadToEndAsync();
        await worker.StandardInput.WriteAsync(Convert.ToBase64String(cluster.Secret) + "\n");
        worker.StandardInput.Close();
        await Eventually.True(() => cluster.Loop.Progress.Succeeded > 0, "the worker joined", 60_000);
        cluster.Loop.ExpectNoMoreWorkers();
        Assert.Equal(4, (await run.WaitAsync(TimeSpan.FromMinutes(1))).Succeeded);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await worker.WaitForExitAsync(timeout.Token);
        Assert.True(worker.ExitCode == 0, await stderr);

        var results = File.ReadAllLines(_dir.File("result.log"));
        Assert.Equal(4, results.Length);
        Assert.All(results, l => Assert.EndsWith(" worker=yes-environ-read hits:", l, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Worker_NoSecretOnStdin_RefusesWithAClearMessage()
    {
        using var worker = ShoalBinary.Start(_dir.Path, ["worker", "--leader", "127.0.0.1:9"], redirectStdin: true);
        worker.StandardInput.Close();
        var stderr = await worker.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await worker.WaitForExitAsync(timeout.Token);
        Assert.Equal(2, worker.ExitCode);
        Assert.Contains("no run secret on stdin", stderr, StringComparison.Ordinal);
    }

    /// <summary>Run as an ordinary user (needs root to switch to nobody, as the SLURM tests need root): another process
    /// of that user must not be able to read the worker's memory or environment.</summary>
    [Fact]
    public async Task Worker_IsNotDumpable_OtherProcessesOfItsUserCannotReadItsMemoryOrEnviron()
    {
        var port = Random.Shared.Next(20_000, 60_000).ToString(CultureInfo.InvariantCulture);
        var psi = new ProcessStartInfo("runuser") { RedirectStandardInput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = "/" };
        foreach (var a in (string[])["-u", "nobody", "--", SlurmCluster.ShoalCommand.Split(' ')[0], .. SlurmCluster.ShoalCommand.Split(' ')[1..], "worker", "--leader", $"127.0.0.1:{port}"])
        {
            psi.ArgumentList.Add(a);
        }

        using var runuser = Process.Start(psi)!;
        try
        {
            // stdin stays open and silent: the worker waits for its secret, after making itself non-dumpable.
            int? pid = null;
            await Eventually.True(() => (pid = FindWorker(port)) is not null, "the worker process");
            await Eventually.True(() => Sh($"stat -c %u /proc/{pid}/environ").Output.Trim() == "0", "its /proc files handed to root (non-dumpable)");
            Assert.Equal(Sh("id -u nobody").Output.Trim(), Sh($"awk '/^Uid:/ {{print $2}}' /proc/{pid}/status").Output.Trim()); // it does run as nobody
            Assert.NotEqual(0, Sh($"runuser -u nobody -- head -c 1 /proc/{pid}/mem").ExitCode);
            Assert.NotEqual(0, Sh($"runuser -u nobody -- head -c 1 /proc/{pid}/environ").ExitCode);
        }
        finally
        {
            runuser.Kill(entireProcessTree: true);
            await runuser.WaitForExitAsync();
        }
    }

    private static int? FindWorker(string port)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            try
            {
                if (int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
                    && File.ReadAllText(Path.Combine(dir, "cmdline")).Contains($"worker\0--leader\0127.0.0.1:{port}", StringComparison.Ordinal)
                    && !File.ReadAllText(Path.Combine(dir, "cmdline")).StartsWith("runuser", StringComparison.Ordinal))
                {
                    return pid;
                }
            }
            catch (IOException)
            {
            }
        }

        return null;
    }

    private static (int ExitCode, string Output) Sh(string command) => SlurmCluster.Run("sh", ["-c", command]);

    public void Dispose() => _dir.Dispose();
}
