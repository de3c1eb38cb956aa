using System.Diagnostics;
using Shoal.Journal;
using Shoal.Tests.EndToEnd;
using Shoal.Tests.Support;

namespace Shoal.Tests.Faults;

/// <summary>The run directory on a tiny tmpfs (root): filled up mid-run, then made read-only.</summary>
public sealed class FilesystemFaultTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly string _mount;

    public FilesystemFaultTests()
    {
        _mount = _dir.File("small");
        Directory.CreateDirectory(_mount);
        Must(SlurmCluster.Run("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", _mount]));
    }

    private static void Must((int ExitCode, string Output) r)
    {
        if (r.ExitCode != 0)
        {
            throw new InvalidOperationException(r.Output);
        }
    }

    [Fact]
    public async Task DiskFullMidRun_StopsWithAClearError_JournalIntact_ResumeCompletesOnceSpaceIsBack()
    {
        _dir.Write("tasks.txt", string.Concat(Enumerable.Repeat("sleep 0.02\n", 600)));
        var runDir = Path.Combine(_mount, "run");
        using var p = ShoalBinary.Start(_dir.Path, ["run", "tasks.txt", "-r", runDir, "--slots", "2"]);
        var stderr = p.StandardError.ReadToEndAsync();
        await Eventually.True(() => File.Exists(Path.Combine(runDir, "journal.db")), "journal created");
        await Task.Delay(500);
        SlurmCluster.Run("dd", ["if=/dev/zero", $"of={Path.Combine(_mount, "filler")}", "bs=64k"]); // fails at ENOSPC, as meant
        using (var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2)))
        {
            await p.WaitForExitAsync(timeout.Token);
        }

        var error = await stderr;
        Assert.Equal(2, p.ExitCode);
        Assert.Contains("writing the journal", error, StringComparison.Ordinal);
        Assert.Contains("full", error, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("   at ", error, StringComparison.Ordinal);

        File.Delete(Path.Combine(_mount, "filler"));
        var resumed = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "-r", runDir, "--slots", "2");
        Assert.Equal(0, resumed.ExitCode);
        using var journal = RunJournal.Open(Path.Combine(runDir, "journal.db"), create: false, readOnly: true);
        var done = journal.AllAttempts().Where(a => a.State == AttemptState.Succeeded).GroupBy(a => a.TaskId).ToList();
        Assert.Equal(600, done.Count);
        Assert.All(done, g => Assert.Single(g));
    }

    [Fact]
    public async Task ReadOnlyRunDirectory_IsAClearError_AndResumeWorksOnceWritable()
    {
        _dir.Write("tasks.txt", "echo a\necho b\n");
        var runDir = Path.Combine(_mount, "run");
        _dir.Write("more.txt", "echo a\necho b\necho c\n");
        Assert.Equal(0, (await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "-r", runDir)).ExitCode);
        Must(SlurmCluster.Run("mount", ["-o", "remount,ro", _mount]));

        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "more.txt", "-r", runDir);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("cannot write in the run directory", r.Stderr, StringComparison.Ordinal);
        Assert.Contains("Read-only", r.Stderr, StringComparison.OrdinalIgnoreCase);

        Must(SlurmCluster.Run("mount", ["-o", "remount,rw", _mount]));
        var resumed = await ShoalBinary.RunAsync(_dir.Path, "run", "more.txt", "-r", runDir);
        Assert.Equal(0, resumed.ExitCode);
        Assert.Contains("3 tasks: 1 succeeded", resumed.Stderr, StringComparison.Ordinal);
    }

    public void Dispose()
    {
        SlurmCluster.Run("umount", ["-l", _mount]);
        _dir.Dispose();
    }
}
