using System.Text;
using Shoal.Execution;
using Shoal.Journal;
using Shoal.Tests.Support;

namespace Shoal.Tests.Execution;

/// <summary>The direct-exec fast path: which commands take it, and that a run with it gives byte for byte the same
/// output and exit codes as a run through the shell (--always-shell), real processes both ways.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class DirectExecTests : IDisposable
{
    private readonly TempDir _dir = new();

    [Theory]
    [InlineData("env", new[] { "env" })]
    [InlineData("true", new[] { "true" })]
    [InlineData("false", new[] { "false" })]
    [InlineData("./convert in/0001.raw out/0001.png", new[] { "./convert", "in/0001.raw", "out/0001.png" })]
    [InlineData("  python3\ttrain.py --fold=3 --lr 1e-3 a,b:c@d%e+f ", new[] { "python3", "train.py", "--fold=3", "--lr", "1e-3", "a,b:c@d%e+f" })]
    [InlineData("/usr/bin/env", new[] { "/usr/bin/env" })]
    public void PlainWords_AreSplitAsTheShellWould(string command, string[] argv) =>
        Assert.Equal(argv, DirectExec.PlainWords(Encoding.UTF8.GetBytes(command)));

    [Theory]
    [InlineData("echo hi")] // builtins differ from their programs
    [InlineData("printf %s x")]
    [InlineData("test -f x")]
    [InlineData("cd /tmp")]
    [InlineData("exec prog")]
    [InlineData("true --help")]
    [InlineData("true && false")]
    [InlineData("prog > out")]
    [InlineData("prog < in")]
    [InlineData("a | b")]
    [InlineData("a; b")]
    [InlineData("a & b")]
    [InlineData("prog $HOME")]
    [InlineData("prog 'quoted arg'")]
    [InlineData("prog \"x\"")]
    [InlineData("prog `date`")]
    [InlineData("prog *.txt")]
    [InlineData("prog file?")]
    [InlineData("prog [ab]")]
    [InlineData("prog ~/x")]
    [InlineData("prog a\\ b")]
    [InlineData("prog # comment")]
    [InlineData("FOO=1 prog")]
    [InlineData("(prog)")]
    [InlineData("{ prog; }")]
    [InlineData("prog {a,b}")]
    [InlineData("if true")]
    [InlineData("prog é")]
    [InlineData("   ")]
    [InlineData("")]
    public void NotPlain_GoesThroughTheShell(string command) =>
        Assert.Null(DirectExec.PlainWords(Encoding.UTF8.GetBytes(command)));

    [Fact]
    public void Resolve_LooksUpPathAsTheShellDoes()
    {
        Assert.Equal("/usr/bin/env", DirectExec.Resolve("env", "/nonexistent:/usr/bin:/bin"));
        Assert.Equal("./x", DirectExec.Resolve("./x", "/usr/bin"));
        Assert.Null(DirectExec.Resolve("no-such-program-shoal", "/usr/bin:/bin"));
    }

    [Fact]
    public async Task ARunWithTheFastPath_MatchesARunThroughTheShell_OutputAndExitCodes()
    {
        _dir.Write("noshebang.sh", "echo from-a-script-without-shebang \"$1\"\n");
        File.SetUnixFileMode(_dir.File("noshebang.sh"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        _dir.Write("noexec.sh", "echo never\n");
        Directory.CreateDirectory(_dir.File("adir"));
        var tasks = string.Join('\n',
            "printenv SHOAL_TASK_ID OMP_NUM_THREADS",
            "ls -d adir noexec.sh",
            "ls no-such-file",
            "no-such-program-shoal with args",
            "./no-such-file",
            "./noexec.sh",
            "./adir",
            "./noshebang.sh one",
            "sh -c exit\\ 7",
            "env",
            "true") + "\n";
        _dir.Write("fast.txt", tasks);
        _dir.Write("shell.txt", tasks);

        var fast = await ShoalBinary.RunAsync(_dir.Path, "run", "fast.txt", "-j", "2", "-q");
        var shell = await ShoalBinary.RunAsync(_dir.Path, "run", "shell.txt", "-j", "2", "-q", "--always-shell");
        Assert.Equal(shell.ExitCode, fast.ExitCode);

        using var fastJournal = RunJournal.Open(_dir.File("fast.txt.shoal/journal.db"), create: false, readOnly: true);
        using var shellJournal = RunJournal.Open(_dir.File("shell.txt.shoal/journal.db"), create: false, readOnly: true);
        var fastRows = fastJournal.LatestAttempts().OrderBy(a => a.TaskId).ToList();
        var shellRows = shellJournal.LatestAttempts().OrderBy(a => a.TaskId).ToList();
        Assert.Equal(11, fastRows.Count);
        Assert.Equal(shellRows.Select(a => (a.TaskId, a.State, a.Status)), fastRows.Select(a => (a.TaskId, a.State, a.Status)));
        Assert.Equal([0, 0, 2, 127, 127, 126, 126, 0, 7, 0, 0], fastRows.Select(a => a.Status));
        foreach (var id in fastRows.Select(a => a.TaskId))
        {
            foreach (var stderr in new[] { false, true })
            {
                var a = await ShoalBinary.RunAsync(_dir.Path, ["cat", id.ToString(System.Globalization.CultureInfo.InvariantCulture), "-r", "fast.txt.shoal", stderr ? "--stderr" : "--attempt=1"], null, null);
                var b = await ShoalBinary.RunAsync(_dir.Path, ["cat", id.ToString(System.Globalization.CultureInfo.InvariantCulture), "-r", "shell.txt.shoal", stderr ? "--stderr" : "--attempt=1"], null, null);
                var (x, y) = id == 10 ? (Env(a.Stdout), Env(b.Stdout)) : (a.Stdout, b.Stdout);
                Assert.True(x == y, $"task {id} {(stderr ? "stderr" : "stdout")}: direct [{x}] shell [{y}]");
            }
        }
    }

    /// <summary>The environment a task saw, less what a shell itself sets (dash: PWD, OLDPWD unset) and the run
    /// directory's name.</summary>
    private static string Env(string printed) =>
        string.Join('\n', printed.Split('\n').Where(l => !l.StartsWith("PWD=", StringComparison.Ordinal) && !l.StartsWith("OLDPWD=", StringComparison.Ordinal) && !l.StartsWith("_=", StringComparison.Ordinal)).Select(l => l.Replace("shell.txt", "fast.txt", StringComparison.Ordinal)).Order(StringComparer.Ordinal));

    public void Dispose() => _dir.Dispose();
}
