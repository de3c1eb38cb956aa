using System.Collections.Concurrent;
using System.Text;
using Shoal.Execution;
using Shoal.Running;
using Shoal.Tests.Support;

namespace Shoal.Tests.Execution;

public sealed class ProcessLauncherTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly ConcurrentDictionary<int, TaskExit> _exits = new();

    private ProcessLauncher Launcher(int lanes = 2) =>
        new(new ProcessLauncherOptions("/bin/sh", _dir.File("out"), lanes, [new("SHOAL_RUN_DIR", _dir.Path)]), e => _exits[e.Task] = e);

    private static LaunchRequest Request(int task, string command, int lane = 0, int cpus = 1, string[]? gpus = null) =>
        new(task, task + 1, 1, Encoding.UTF8.GetBytes(command), lane, cpus, gpus);

    private byte[] Slice(int lane, bool stderr, long offset, long length) =>
        File.ReadAllBytes(RunDirectory.LaneLog(_dir.File("out"), "w0-", lane, stderr)).AsSpan((int)offset, (int)length).ToArray();

    [Fact]
    public async Task Launch_CapturesStdoutAndStderrPerAttempt_ByteForByte()
    {
        using var launcher = Launcher();
        launcher.Launch(Request(0, "printf 'one\\000\\377\\n'; printf 'e1' >&2"));
        await Eventually.True(() => _exits.ContainsKey(0), "first exit");
        launcher.Launch(Request(1, "printf two; printf e2 >&2"));
        await Eventually.True(() => _exits.ContainsKey(1), "second exit");

        var a = _exits[0];
        var b = _exits[1];
        Assert.Equal(new byte[] { (byte)'o', (byte)'n', (byte)'e', 0, 0xff, (byte)'\n' }, Slice(0, false, a.OutOffset, a.OutLength));
        Assert.Equal("e1"u8.ToArray(), Slice(0, true, a.ErrOffset, a.ErrLength));
        Assert.Equal("two"u8.ToArray(), Slice(0, false, b.OutOffset, b.OutLength));
        Assert.Equal("e2"u8.ToArray(), Slice(0, true, b.ErrOffset, b.ErrLength));
    }

    [Fact]
    public async Task Launch_ReportsExitCodeAndSignal()
    {
        using var launcher = Launcher();
        launcher.Launch(Request(0, "exit 42"));
        launcher.Launch(Request(1, "kill -9 $$", lane: 1));
        await Eventually.True(() => _exits.Count == 2, "exits");

        Assert.Equal((42, 0), (_exits[0].ExitCode, _exits[0].Signal));
        Assert.Equal(9, _exits[1].Signal);
    }

    [Fact]
    public async Task Launch_SetsTaskEnvironment()
    {
        using var launcher = Launcher();
        launcher.Launch(Request(6, "echo $SHOAL_TASK_ID $SHOAL_ATTEMPT $OMP_NUM_THREADS $CUDA_VISIBLE_DEVICES $SHOAL_RUN_DIR", cpus: 2, gpus: ["3", "5"]));
        await Eventually.True(() => _exits.ContainsKey(6), "exit");
        var e = _exits[6];
        Assert.Equal($"7 1 2 3,5 {_dir.Path}\n", Encoding.UTF8.GetString(Slice(0, false, e.OutOffset, e.OutLength)));
    }

    [Fact]
    public async Task Launch_TaskDoesNotInheritIgnoredSigpipe()
    {
        // .NET ignores SIGPIPE; a child that inherited that would see 'yes' loop on EPIPE instead of dying.
        using var launcher = Launcher();
        launcher.Launch(Request(0, "yes | head -c 10 >/dev/null; echo done"));
        await Eventually.True(() => _exits.ContainsKey(0), "exit", 10_000);
        Assert.Equal(0, _exits[0].ExitCode);
    }

    [Fact]
    public async Task Signal_KillsTheWholeProcessGroup_IncludingChildren()
    {
        using var launcher = Launcher();
        var pidFile = _dir.File("child.pid");
        launcher.Launch(Request(0, $"sleep 300 & echo $! > {pidFile}; wait"));
        await Eventually.True(() => File.Exists(pidFile) && File.ReadAllText(pidFile).EndsWith('\n'), "child started");
        var child = int.Parse(File.ReadAllText(pidFile).Trim(), System.Globalization.CultureInfo.InvariantCulture);

        launcher.Signal(0, Native.SIGTERM);
        await Eventually.True(() => _exits.ContainsKey(0), "exit");
        await Eventually.True(() => !Processes.Alive(child), "child gone");
        Assert.Equal(Native.SIGTERM, _exits[0].Signal);
    }

    [Fact]
    public async Task Exit_KillsLeftoversOfTheProcessGroup()
    {
        using var launcher = Launcher();
        var pidFile = _dir.File("bg.pid");
        launcher.Launch(Request(0, $"sleep 300 & echo $! > {pidFile}"));
        await Eventually.True(() => _exits.ContainsKey(0), "exit");
        var child = int.Parse(File.ReadAllText(pidFile).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        await Eventually.True(() => !Processes.Alive(child), "background child killed");
    }

    [Fact]
    public async Task Launch_MissingShell_IsAFailedAttemptWithAnExplanation()
    {
        using var launcher = new ProcessLauncher(new ProcessLauncherOptions("/nonexistent/shell", _dir.File("out"), 1, []), e => _exits[e.Task] = e);
        launcher.Launch(Request(0, "true"));
        await Eventually.True(() => _exits.ContainsKey(0), "exit");
        var e = _exits[0];
        Assert.Equal(127, e.ExitCode);
        Assert.Contains("cannot start /nonexistent/shell", Encoding.UTF8.GetString(Slice(0, true, e.ErrOffset, e.ErrLength)), StringComparison.Ordinal);
    }

    public void Dispose() => _dir.Dispose();
}
