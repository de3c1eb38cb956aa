using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Shoal.Tests.Support;

namespace Shoal.Tests.EndToEnd;

/// <summary>status, list and report of a real run; the report opened in real headless Chromium.</summary>
public sealed partial class ReportEndToEndTests : IDisposable
{
    private readonly TempDir _dir = new();

    [Fact]
    public async Task StatusListAndReport_OfAFinishedRun_ShowItsTruth_AndTheReportLoadsInChromium()
    {
        var lines = Enumerable.Range(0, 30).Select(i => i % 10 == 4 ? $"echo failing {i} >&2; exit 2" : $"sleep 0.0{i % 5}; echo ok");
        _dir.Write("tasks.txt", string.Join('\n', lines) + "\n");
        Assert.Equal(1, (await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "3")).ExitCode);

        var status = await ShoalBinary.RunAsync(_dir.Path, "status", "-o", "json");
        Assert.Equal(0, status.ExitCode);
        using (var doc = JsonDocument.Parse(status.Stdout))
        {
            var root = doc.RootElement;
            Assert.False(root.GetProperty("active").GetBoolean());
            Assert.Equal((30, 27, 3), (root.GetProperty("total").GetInt32(), root.GetProperty("done").GetInt32(), root.GetProperty("failed").GetInt32()));
            Assert.Equal(3, root.GetProperty("workers")[0].GetProperty("slots").GetInt32());
        }

        Assert.Contains("30 tasks: 27 done, 3 failed", (await ShoalBinary.RunAsync(_dir.Path, "status")).Stdout, StringComparison.Ordinal);
        var failed = await ShoalBinary.RunAsync(_dir.Path, "list", "--state", "failed", "-o", "csv");
        Assert.Equal(["5", "15", "25"], failed.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(l => l.Split(',')[0]));

        Assert.Equal(0, (await ShoalBinary.RunAsync(_dir.Path, "report", "-o", "report.html")).ExitCode);
        var html = File.ReadAllText(_dir.File("report.html"));
        Assert.DoesNotContain("http://", html, StringComparison.Ordinal);
        Assert.DoesNotContain("https://", html, StringComparison.Ordinal);
        Assert.Contains("failing 14", html, StringComparison.Ordinal);

        var (dom, log) = Chromium.Run(_dir.Path, "--dump-dom", _dir.File("report.html"));
        Assert.Contains("data-ready=\"1\"", dom, StringComparison.Ordinal);
        Assert.Contains("data-tasks=\"30\"", dom, StringComparison.Ordinal);
        Assert.Equal(30, TaskRect().Count(dom));
        Assert.Equal(3, FailureRow().Count(dom));
        Assert.DoesNotMatch(ConsoleError(), log);

        var shot = Path.Combine(Chromium.ArtifactDirectory(), "report-screenshot.png");
        Chromium.Run(_dir.Path, $"--screenshot={shot}", _dir.File("report.html"));
        Assert.True(new FileInfo(shot).Length > 10_000, "no screenshot");
    }

    [Fact]
    public async Task Status_DuringARun_SeesItActiveWithItsRunningTasks()
    {
        _dir.Write("tasks.txt", "true\n" + string.Concat(Enumerable.Range(0, 4).Select(_ => "while [ ! -f go ]; do sleep 0.1; done\n")));
        using var run = ShoalBinary.Start(_dir.Path, ["run", "tasks.txt", "--slots", "2", "-q"]);
        try
        {
            JsonElement? seen = null;
            await Eventually.True(
                () =>
                {
                    var r = ShoalBinary.RunAsync(_dir.Path, "status", "-o", "json").GetAwaiter().GetResult();
                    if (r.ExitCode != 0)
                    {
                        return false;
                    }

                    var root = JsonDocument.Parse(r.Stdout).RootElement.Clone();
                    seen = root;
                    // `true` may still be running when the first waiter starts: wait for it to be done too.
                    return root.GetProperty("running").GetInt32() == 2 && root.GetProperty("longest_running").GetArrayLength() == 2 && root.GetProperty("done").GetInt32() == 1;
                },
                "status shows two running tasks and one done");
            var s = seen!.Value;
            Assert.True(s.GetProperty("active").GetBoolean());
            Assert.Equal(1, s.GetProperty("done").GetInt32());
            Assert.Equal(2, s.GetProperty("not_started").GetInt32());
        }
        finally
        {
            File.WriteAllText(_dir.File("go"), "");
            await run.WaitForExitAsync();
        }

        Assert.Equal(0, run.ExitCode);
    }

    [GeneratedRegex("<rect class=\"task ")]
    private static partial Regex TaskRect();

    [GeneratedRegex("<tr class=\"failure\">")]
    private static partial Regex FailureRow();

    [GeneratedRegex("CONSOLE.*(Uncaught|Error)|Uncaught ")]
    private static partial Regex ConsoleError();

    public void Dispose() => _dir.Dispose();
}

/// <summary>Debian's chromium, headless, with the flags a closed network needs; installed on first use when missing.</summary>
internal static class Chromium
{
    private static readonly Lock Gate = new();

    public static (string Stdout, string Stderr) Run(string workDir, string mode, string file)
    {
        Ensure();
        var profile = Directory.CreateTempSubdirectory("shoal-chromium-");
        try
        {
            var psi = new ProcessStartInfo("chromium") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workDir };
            foreach (var a in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0", $"--user-data-dir={profile.FullName}", "--window-size=1300,1400", mode, "file://" + file })
            {
                psi.ArgumentList.Add(a);
            }

            using var p = Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
            {
                p.Kill(entireProcessTree: true);
                throw new TimeoutException("chromium did not finish");
            }

            return (stdout.Result, stderr.Result);
        }
        finally
        {
            profile.Delete(recursive: true);
        }
    }

    /// <summary>artifacts/ of the repository when there is one (CI keeps it), else the test's folder.</summary>
    public static string ArtifactDirectory()
    {
        var path = Repository.Root is { } root ? Path.Combine(root, "artifacts") : AppContext.BaseDirectory;
        Directory.CreateDirectory(path);
        return path;
    }

    private static void Ensure()
    {
        lock (Gate)
        {
            if (File.Exists("/usr/bin/chromium"))
            {
                return;
            }

            var r = SlurmCluster.Run("bash", ["-c", "DEBIAN_FRONTEND=noninteractive apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get -qq install -y chromium"], timeout: TimeSpan.FromMinutes(10));
            if (r.ExitCode != 0)
            {
                throw new InvalidOperationException("installing chromium failed: " + r.Output);
            }
        }
    }
}
