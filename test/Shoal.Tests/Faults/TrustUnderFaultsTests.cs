using System.Globalization;
using Shoal.Execution;
using Shoal.Journal;
using Shoal.Tests.Support;

namespace Shoal.Tests.Faults;

/// <summary>The real binary when things go wrong: stop signals, foreign children, escaping processes, process limits,
/// kill -9 while tasks run. Each test reproduces a defect of issue 9 and checks the promise it broke.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class TrustUnderFaultsTests : IDisposable
{
    private readonly TempDir _dir = new();

    private RunJournal Journal(string runDir = "tasks.txt.shoal") =>
        RunJournal.Open(_dir.File(Path.Combine(runDir, "journal.db")), create: false, readOnly: true);

    private int ReadPid(string file) => int.Parse(File.ReadAllText(_dir.File(file)).Trim(), CultureInfo.InvariantCulture);

    /// <summary>Waits until the task has written its whole pid line to task.pid; returns the pid.</summary>
    private async Task<int> TaskStarted()
    {
        await Eventually.True(() => File.Exists(_dir.File("task.pid")) && File.ReadAllText(_dir.File("task.pid")).EndsWith('\n'), "task started");
        return ReadPid("task.pid");
    }

    [Fact]
    public async Task SigTerm_DefaultGrace_TaskIgnoringTerm_WaitsTheGraceKillsRecordsEndsSessionPrintsSummary()
    {
        // System.CommandLine used to return from Main 2 s after the signal, mid-grace: no summary, session open,
        // the row still "running", the task still alive.
        _dir.Write("tasks.txt", "echo $$ > task.pid; trap '' TERM; sleep 20 & wait; sleep 20\n");
        using var p = ShoalBinary.Start(_dir.Path, ["run", "tasks.txt", "--grace", "4s"]);
        var stderr = p.StandardError.ReadToEndAsync();
        var task = await TaskStarted();
        Assert.Equal(0, Native.Kill(p.Id, Native.SIGTERM));
        await Task.Delay(2500);
        Assert.False(p.HasExited, "shoal left before the grace was over");
        Assert.True(Processes.Alive(task), "the task was killed before the grace was over");
        await p.WaitForExitAsync();

        Assert.Equal(143, p.ExitCode);
        var text = await stderr;
        Assert.Contains("1 interrupted", text, StringComparison.Ordinal);
        Assert.Contains("stopped by signal 15", text, StringComparison.Ordinal);
        Assert.False(Processes.Alive(task), "the task outlived shoal");
        using var journal = Journal();
        var attempt = Assert.Single(journal.Attempts(1));
        Assert.Equal((AttemptState.Interrupted, -9), (attempt.State, attempt.Status));
        var session = Assert.Single(journal.Sessions());
        Assert.NotNull(session.Ended);
        Assert.Equal("stopped by signal 15", session.Outcome);
    }

    [Fact]
    public async Task SecondSignal_KillsAtOnce_StillRecordsAndEndsTheSession()
    {
        _dir.Write("tasks.txt", "echo $$ > task.pid; trap '' TERM INT; sleep 60 & wait; sleep 60\n");
        using var p = ShoalBinary.Start(_dir.Path, ["run", "tasks.txt", "--grace", "5m"]);
        var stderr = p.StandardError.ReadToEndAsync();
        var task = await TaskStarted();
        Assert.Equal(0, Native.Kill(p.Id, Native.SIGINT));
        await Task.Delay(500);
        Assert.Equal(0, Native.Kill(p.Id, Native.SIGINT));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await p.WaitForExitAsync(timeout.Token); // not the 5 minutes of grace
        Assert.Equal(130, p.ExitCode);
        Assert.Contains("1 interrupted", await stderr, StringComparison.Ordinal);
        Assert.False(Processes.Alive(task));
        using var journal = Journal();
        Assert.Equal(AttemptState.Interrupted, Assert.Single(journal.Attempts(1)).State);
        Assert.NotNull(Assert.Single(journal.Sessions()).Ended);
    }

    [Fact]
    public async Task TaskThatAnswersTheStopWithExitZero_IsInterrupted_AndRerunsOnResume()
    {
        // Decision (README): exit 0 counts as success only when the task's own exit came before our signal reached
        // it. A task that catches our TERM and exits 0 answered the stop; its work may be unfinished.
        _dir.Write("tasks.txt", "[ -f go ] && exit 0; echo $$ > task.pid; trap 'exit 0' TERM; sleep 30 & wait\n");
        using var p = ShoalBinary.Start(_dir.Path, ["run", "tasks.txt"]);
        await TaskStarted();
        await Task.Delay(200);
        Assert.Equal(0, Native.Kill(p.Id, Native.SIGTERM));
        await p.WaitForExitAsync();
        Assert.Equal(143, p.ExitCode);
        using (var journal = Journal())
        {
            var a = Assert.Single(journal.Attempts(1));
            Assert.Equal((AttemptState.Interrupted, 0), (a.State, a.Status));
        }

        File.WriteAllText(_dir.File("go"), "");
        Assert.Equal(0, (await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "-q")).ExitCode);
        using var after = Journal();
        Assert.Equal(AttemptState.Succeeded, after.Attempts(1)[^1].State);
    }

    public static TheoryData<string, string[]> ForeignChildren => new()
    {
        // shoal inherits a child from the shell that exec'd it
        { "inherited", ["sh", "-c", "sleep 0.2 & exec {shoal}"] },
        // shoal as PID 1 of a PID namespace: orphans of tasks are reparented to it
        { "pid1", ["unshare", "-fp", "--mount-proc"] },
        // shoal started with SIGCHLD ignored: the kernel would reap its children itself
        { "sigchld-ignored", ["env", "--ignore-signal=CHLD"] },
    };

    [Theory]
    [MemberData(nameof(ForeignChildren))]
    public async Task ForeignChildren_DoNotHangTheRun(string name, string[] wrapper)
    {
        _dir.Write("tasks.txt", "echo a\n(sleep 0.3 &); echo orphaned\nsleep 0.5; echo b\n(sleep 0.2 &); sleep 0.6\necho c\n");
        var r = await ShoalBinary.RunWrappedAsync(_dir.Path, wrapper, ["run", "tasks.txt", "-j1", "-o", "json"]);
        Assert.True(r.ExitCode == 0, $"{name}: exit {r.ExitCode}: {r.Stderr}");
        Assert.Contains("\"succeeded\":5", r.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("101")]
    [InlineData("256")]
    [InlineData("100000")]
    public async Task Retries_OutOfRange_IsABadInputError(string retries)
    {
        _dir.Write("tasks.txt", "false\n");
        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--retries", retries);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains($"--retries {retries}: must be between 0 and 100", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Retries_TheMaximum_RunsExactlyThatManyMoreAttempts()
    {
        _dir.Write("tasks.txt", "false\n");
        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--retries", "100", "-q");
        Assert.Equal(1, r.ExitCode);
        using var journal = Journal();
        Assert.Equal(101, journal.Attempts(1).Count);
    }

    [Theory]
    [InlineData("timeout", "#SHOAL timeout=300ms\ntimeout 10 sh -c 'echo $$ > leak.pid; sleep 0.8; echo LEAK'\n")]
    [InlineData("setsid", "setsid sh -c 'echo $$ > leak.pid; sleep 0.8; echo LEAK; echo LEAK >&2' & sleep 0.2\n")]
    public async Task ProcessThatLeftTheTaskGroup_NeverWritesIntoALaterTask_AndIsEnded(string how, string escaper)
    {
        // Task 1 leaves a process outside its process group (GNU timeout's own group; a new session) that writes
        // after task 1 ended, while task 2 runs on the same lane.
        _dir.Write("tasks.txt", escaper + "sleep 1.5; echo next\necho third\n");
        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "-j1", "-q");
        Assert.True(r.ExitCode is 0 or 1, r.Stderr);
        var id = escaper.StartsWith("#SHOAL", StringComparison.Ordinal) ? 3 : 2;
        Assert.Equal("next\n", (await ShoalBinary.RunAsync(_dir.Path, "cat", id.ToString(CultureInfo.InvariantCulture))).Stdout);
        Assert.Equal("", (await ShoalBinary.RunAsync(_dir.Path, "cat", id.ToString(CultureInfo.InvariantCulture), "--stderr")).Stdout);
        Assert.Equal("third\n", (await ShoalBinary.RunAsync(_dir.Path, "cat", (id + 1).ToString(CultureInfo.InvariantCulture))).Stdout);
        await Eventually.True(() => !Processes.Alive(ReadPid("leak.pid")), $"{how}: the escaped process was ended");
        await Task.Delay(1000);
        foreach (var log in Directory.GetFiles(_dir.File("tasks.txt.shoal/out/s1")))
        {
            Assert.DoesNotContain("LEAK", File.ReadAllText(log), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task ProcessLimit_SpawnFailuresAreRetried_NotRecordedAsTaskFailures()
    {
        // Run as an unprivileged user (root ignores RLIMIT_NPROC); once shoal's own threads exist, lower its process
        // limit below what 8 slots need, so that starts fail with EAGAIN now and then.
        // 80 × 0.3 s on 8 slots: about 3 s, so the run is still starting tasks when the limit is lowered (a release
        // binary with direct starts finished 60 × 0.1 s before the limit came, and the test read a gone /proc entry).
        var tasks = 80;
        // exec: the only forks are shoal's (a shell that cannot fork inside a task is that task's own failure).
        _dir.Write("tasks.txt", string.Concat(Enumerable.Repeat("exec sleep 0.3\n", tasks)));
        File.SetUnixFileMode(_dir.Path, (UnixFileMode)0b111_111_111);
        File.SetUnixFileMode(_dir.File("tasks.txt"), (UnixFileMode)0b110_110_110);
        using var p = ShoalBinary.StartWrapped(_dir.Path, ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], ["run", "tasks.txt", "-j", "8"], new Dictionary<string, string> { ["HOME"] = _dir.Path });
        var stderr = p.StandardError.ReadToEndAsync();
        await Eventually.True(() => File.Exists(_dir.File("tasks.txt.shoal/journal.db")), "run started");
        await Task.Delay(400);
        var own = Directory.GetDirectories($"/proc/{p.Id}/task").Length;
        var others = Leftovers.Pids().Count(pid => Owner(pid) == 65534) - 1;
        var limit = own + others - 3;
        RunChecked("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "prlimit", "--pid", p.Id.ToString(CultureInfo.InvariantCulture), $"--nproc={limit}:{limit}");
        await p.WaitForExitAsync();
        var text = await stderr;
        Assert.True(p.ExitCode == 0, text);
        Assert.Matches("[1-9][0-9]* starts failed for lack of resources", text);
        using var journal = Journal();
        Assert.Equal(tasks, journal.LatestAttempts([AttemptState.Succeeded]).Count);
        Assert.DoesNotContain(journal.AllAttempts(), a => a.State is AttemptState.Failed);
    }

    [Fact]
    public async Task KillNine_ThenResume_EndsTheTasksTheKilledShoalLeftRunning_BeforeStartingAnything()
    {
        _dir.Write("tasks.txt", "echo $$ >> pids; trap 'echo term >> got' TERM; sleep 60 & wait\necho $$ >> pids; sleep 60\necho quick\n");
        using (var p = ShoalBinary.Start(_dir.Path, ["run", "tasks.txt", "-j", "2", "-q"]))
        {
            await Eventually.True(() => File.Exists(_dir.File("pids")) && File.ReadAllLines(_dir.File("pids")).Length == 2, "both tasks run");
            p.Kill();
            await p.WaitForExitAsync();
        }

        var survivors = File.ReadAllLines(_dir.File("pids")).Select(l => int.Parse(l, CultureInfo.InvariantCulture)).ToList();
        Assert.All(survivors, pid => Assert.True(Processes.Alive(pid), "the tasks outlive a kill -9 of shoal"));
        File.WriteAllText(_dir.File("tasks.txt"), File.ReadAllText(_dir.File("tasks.txt"))); // unchanged
        using var resume = ShoalBinary.Start(_dir.Path, ["run", "tasks.txt", "-j", "2", "--grace", "1s"]);
        var stderr = resume.StandardError.ReadToEndAsync();
        await Eventually.True(() => File.ReadAllLines(_dir.File("pids")).Length >= 3, "reruns start");
        Assert.All(survivors, pid => Assert.False(Processes.Alive(pid), "a survivor of the killed run still runs while its task runs again"));
        Assert.Equal(0, Native.Kill(resume.Id, Native.SIGTERM));
        await resume.WaitForExitAsync();
        Assert.Contains("ended the processes of 2 task(s) still running from an earlier shoal", await stderr, StringComparison.Ordinal);
        Assert.Equal("term", File.ReadAllText(_dir.File("got")).Split('\n')[0]);
    }

    [Fact]
    public async Task ByteOrderMark_AtTheStartOfATaskFile_IsSkipped()
    {
        File.WriteAllBytes(_dir.File("tasks.txt"), [0xEF, 0xBB, 0xBF, .. "# comment\necho ok\n"u8]);
        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "-q");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("ok\n", (await ShoalBinary.RunAsync(_dir.Path, "cat", "2")).Stdout);
    }

    private static int Owner(int pid)
    {
        try
        {
            var line = File.ReadLines($"/proc/{pid}/status").FirstOrDefault(l => l.StartsWith("Uid:", StringComparison.Ordinal));
            return line is null ? -1 : int.Parse(line.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return -1;
        }
    }

    /// <summary>Runs a command and checks it succeeded (prlimit runs as the same unprivileged user as shoal: lowering
    /// another user's limit needs CAP_SYS_RESOURCE, which a container's root may lack).</summary>
    private static void RunChecked(string file, params string[] args)
    {
        using var p = System.Diagnostics.Process.Start(file, args);
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
    }

    public void Dispose() => _dir.Dispose();
}
