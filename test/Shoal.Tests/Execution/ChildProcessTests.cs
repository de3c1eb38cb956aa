using Shoal.Execution;
using Shoal.Tests.Support;

namespace Shoal.Tests.Execution;

public sealed class ChildProcessTests : IDisposable
{
    private readonly TempDir _dir = new();

    [Fact]
    public async Task Start_WithStdinBytes_ChildReadsThemThenEndOfFile()
    {
        var exited = new TaskCompletionSource<(int, int)>(TaskCreationOptions.RunContinuationsAsynchronously);
        ChildProcess.Start("/bin/sh", ["-c", $"cat > {_dir.File("got")}"], [], [], (code, signal) => exited.TrySetResult((code, signal)), stdin: "line one\nline two\n"u8.ToArray());

        // cat ends only at end of file: our write end must be closed, and no one else may hold it.
        Assert.Equal((0, 0), await exited.Task.WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal("line one\nline two\n", File.ReadAllText(_dir.File("got")));
    }

    [Fact]
    public async Task Start_WithoutStdin_ChildReadsDevNull()
    {
        var exited = new TaskCompletionSource<(int, int)>(TaskCreationOptions.RunContinuationsAsynchronously);
        ChildProcess.Start("/bin/sh", ["-c", $"readlink /proc/self/fd/0 > {_dir.File("stdin")}"], [], [], (code, signal) => exited.TrySetResult((code, signal)));

        Assert.Equal((0, 0), await exited.Task.WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal("/dev/null", File.ReadAllText(_dir.File("stdin")).Trim());
    }

    public void Dispose() => _dir.Dispose();
}
