using Microsoft.Data.Sqlite;
using Shoal.Tests.Support;

namespace Shoal.Tests.EndToEnd;

/// <summary>Bad input: one clear line naming the problem, exit code 2, never a stack trace.</summary>
public sealed class BadInputTests : IDisposable
{
    private readonly TempDir _dir = new();

    private async Task<string> ExpectExit2(params string[] args)
    {
        var r = await ShoalBinary.RunAsync(_dir.Path, args);
        Assert.Equal(2, r.ExitCode);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", r.Stderr, StringComparison.Ordinal);
        return r.Stderr;
    }

    [Fact]
    public async Task MalformedDirective_NamesFileAndLine()
    {
        _dir.Write("tasks.txt", "echo ok\n#SHOAL cpus=x\necho no\n");
        Assert.Contains("tasks.txt:2: cpus=x is not a whole number", await ExpectExit2("run", "tasks.txt"), StringComparison.Ordinal);
        Assert.False(Directory.Exists(_dir.File("tasks.txt.shoal")));
    }

    [Fact]
    public async Task UnknownOption_IsUsageError() =>
        Assert.Contains("--no-such-option", await ExpectExit2("run", "--no-such-option", "x"), StringComparison.Ordinal);

    [Fact]
    public async Task BadOptionValues_AreUsageErrors()
    {
        _dir.Write("tasks.txt", "true\n");
        Assert.Contains("--timeout 'soon'", await ExpectExit2("run", "tasks.txt", "--timeout", "soon"), StringComparison.Ordinal);
        Assert.Contains("--slots 0", await ExpectExit2("run", "tasks.txt", "--slots", "0"), StringComparison.Ordinal);
        Assert.Contains("--slots", await ExpectExit2("run", "tasks.txt", "--slots", "many"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task MissingOrUnreadableFile_SaysSo()
    {
        Assert.Contains("cannot read nope.txt", await ExpectExit2("run", "nope.txt"), StringComparison.Ordinal);
        Directory.CreateDirectory(_dir.File("adir"));
        Assert.Contains("cannot read adir", await ExpectExit2("run", "adir"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TaskLargerThanTheMachine_IsAnInputErrorNotAHang()
    {
        _dir.Write("tasks.txt", "true\n#SHOAL cpus=64\ntrue\n");
        Assert.Contains("tasks.txt:3: the task asks for 64 CPUs", await ExpectExit2("run", "tasks.txt", "--slots", "2"), StringComparison.Ordinal);
        _dir.Write("gpu.txt", "#SHOAL gpus=1\ntrue\n");
        Assert.Contains("gpu.txt:2: the task asks for 1 CPUs and 1 GPUs", await ExpectExit2("run", "gpu.txt"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task CorruptJournal_IsReportedAndLeftAlone()
    {
        _dir.Write("tasks.txt", "true\n");
        Directory.CreateDirectory(_dir.File("tasks.txt.shoal"));
        _dir.Write("tasks.txt.shoal/journal.db", new string('x', 5000));
        Assert.Contains("is not a usable Shoal journal", await ExpectExit2("run", "tasks.txt"), StringComparison.Ordinal);
        Assert.Equal(new string('x', 5000), File.ReadAllText(_dir.File("tasks.txt.shoal/journal.db")));
    }

    [Fact]
    public async Task NewerJournal_IsRefused()
    {
        _dir.Write("tasks.txt", "true\n");
        Assert.Equal(0, (await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt")).ExitCode);
        Shoal.Journal.RunJournal.Initialize();
        using (var c = new SqliteConnection($"Data Source={_dir.File("tasks.txt.shoal/journal.db")};Pooling=False"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "PRAGMA user_version = 7";
            cmd.ExecuteNonQuery();
        }

        Assert.Contains("written by a newer Shoal", await ExpectExit2("run", "tasks.txt"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task CatOfUnknownTask_IsAClearError()
    {
        _dir.Write("tasks.txt", "true\n");
        Assert.Equal(0, (await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt")).ExitCode);
        Assert.Contains("task 9 has not run", await ExpectExit2("cat", "9"), StringComparison.Ordinal);
    }

    public void Dispose() => _dir.Dispose();
}
