using System.Text;
using Shoal.Journal;
using Shoal.Tests.Support;

namespace Shoal.Tests.Faults;

/// <summary>Tasks that do what tasks should not.</summary>
public sealed class MisbehavingTaskTests : IDisposable
{
    private readonly TempDir _dir = new();

    [Fact]
    public async Task IgnoresTerm_ReadsStdin_ClosesStdout_FloodsOutput_LeavesChildren_RunStillEndsCorrectly()
    {
        _dir.Write("tasks.txt", string.Join('\n',
            "#SHOAL timeout=1s",
            "trap '' TERM; while true; do sleep 0.1; done",           // 2: ignores TERM: KILL after the grace
            "cat; echo read-eof",                                     // 3: reads stdin: gets EOF at once
            "exec >&-; echo gone 2>/dev/null; echo still-stderr >&2", // 4: closes stdout early
            "head -c 50000000 /dev/zero",                             // 5: 50 MB of output, kept whole
            "sleep 300 & echo $! > orphan.pid",                       // 6: leaves a child behind
            "") + "\n");
        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "4", "--grace", "1s");

        Assert.Equal(1, r.ExitCode);
        Assert.Contains("2 (timed out)", r.Stderr, StringComparison.Ordinal);
        using var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true);
        var timedOut = Assert.Single(journal.Attempts(2));
        Assert.Equal((AttemptState.TimedOut, -9), (timedOut.State, timedOut.Status));
        Assert.Equal("read-eof\n", (await ShoalBinary.RunAsync(_dir.Path, "cat", "3")).Stdout);
        Assert.Equal("still-stderr\n", (await ShoalBinary.RunAsync(_dir.Path, "cat", "4", "--stderr")).Stdout);
        Assert.Equal(50_000_000, Assert.Single(journal.Attempts(5)).OutLength);
        var orphan = int.Parse(File.ReadAllText(_dir.File("orphan.pid")).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        await Eventually.True(() => !EndToEnd.SlurmCluster.Alive(orphan), "the task's leftover child was killed");
    }

    [Fact]
    public async Task FuzzedTaskFiles_GiveAClearErrorOrRun_NeverACrash()
    {
        var random = new Random(6);
        for (var i = 0; i < 12; i++)
        {
            var bytes = new byte[random.Next(1, 400)];
            random.NextBytes(bytes);
            File.WriteAllBytes(_dir.File("fuzz.txt"), bytes);
            var r = await ShoalBinary.RunAsync(_dir.Path, "run", "fuzz.txt", "-r", $"fuzz{i}", "--timeout", "2s");
            Assert.True(r.ExitCode is 0 or 1 or 2, $"exit {r.ExitCode}: {r.Stderr}");
            Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("Unhandled", r.Stderr, StringComparison.Ordinal);
            if (r.ExitCode == 2)
            {
                Assert.Contains("fuzz.txt:", r.Stderr, StringComparison.Ordinal);
            }
        }

        File.WriteAllBytes(_dir.File("long.txt"), Encoding.ASCII.GetBytes("echo ok\necho " + new string('x', 10 << 20) + "\n"));
        var longLine = await ShoalBinary.RunAsync(_dir.Path, "run", "long.txt");
        Assert.Equal(2, longLine.ExitCode);
        Assert.Contains("long.txt:2: the command is 10,485,765 bytes long", longLine.Stderr, StringComparison.Ordinal);

        File.WriteAllText(_dir.File("crlf.txt"), "echo a\r\n\r\n#SHOAL cpus=1\r\necho b\r\n");
        Assert.Equal(0, (await ShoalBinary.RunAsync(_dir.Path, "run", "crlf.txt")).ExitCode);
        Assert.Equal("b\n", (await ShoalBinary.RunAsync(_dir.Path, "cat", "4", "-r", "crlf.txt.shoal")).Stdout);
    }

    [Theory]
    [InlineData("--slots", "-3")]
    [InlineData("--slots", "99999999999")]
    [InlineData("--timeout", "1e400")]
    [InlineData("--timeout", "-1s")]
    [InlineData("--grace", "soon")]
    [InlineData("--retries", "x")]
    [InlineData("--range", "1-")]
    [InlineData("--gpus", "a=b")]
    [InlineData("--output", "xml")]
    public async Task FuzzedOptionValues_AreUsageErrors(string option, string value)
    {
        _dir.Write("tasks.txt", "true\n");
        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", option, value);
        Assert.Equal(2, r.ExitCode);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
        Assert.StartsWith("shoal: ", r.Stderr, StringComparison.Ordinal);
    }

    public void Dispose() => _dir.Dispose();
}
