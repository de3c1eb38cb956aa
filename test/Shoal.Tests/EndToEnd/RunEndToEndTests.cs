using System.Globalization;
using System.Text;
using System.Text.Json;
using Shoal.Journal;
using Shoal.Tests.Support;

namespace Shoal.Tests.EndToEnd;

/// <summary>The real binary, real processes, a real SQLite journal.</summary>
public sealed class RunEndToEndTests : IDisposable
{
    private readonly TempDir _dir = new();

    /// <summary>Each task writes "start end" (ns) into rec/ID.ATTEMPT, plus extra lines from the task.</summary>
    private static string Recorded(string body) =>
        $"s=$(date +%s%N); {body}; echo \"$s $(date +%s%N) $CUDA_VISIBLE_DEVICES\" > rec/$SHOAL_TASK_ID.$SHOAL_ATTEMPT";

    private List<(int Id, long Start, long End, string Gpus)> Records()
    {
        var list = new List<(int, long, long, string)>();
        foreach (var f in Directory.GetFiles(_dir.File("rec")))
        {
            var parts = File.ReadAllText(f).Trim().Split(' ');
            var id = int.Parse(Path.GetFileName(f).Split('.')[0], CultureInfo.InvariantCulture);
            list.Add((id, long.Parse(parts[0], CultureInfo.InvariantCulture), long.Parse(parts[1], CultureInfo.InvariantCulture), parts.Length > 2 ? parts[2] : ""));
        }

        return list;
    }

    private static int MaxOverlap(IEnumerable<(long Start, long End)> intervals)
    {
        var events = intervals.SelectMany(i => new[] { (i.Start, 1), (i.End, -1) }).OrderBy(e => e.Item1).ThenBy(e => e.Item2);
        int now = 0, max = 0;
        foreach (var (_, d) in events)
        {
            now += d;
            max = Math.Max(max, now);
        }

        return max;
    }

    [Fact]
    public async Task Run_EveryTaskExactlyOnce_NeverMoreThanSlotsAtOnce()
    {
        Directory.CreateDirectory(_dir.File("rec"));
        var lines = Enumerable.Range(0, 60).Select(i => Recorded($"sleep 0.0{i % 10}"));
        _dir.Write("tasks.txt", "# sixty tasks\n" + string.Join('\n', lines) + "\n");

        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "3");

        Assert.Equal(0, r.ExitCode);
        var records = Records();
        Assert.Equal(Enumerable.Range(2, 60), records.Select(x => x.Id).Order());
        Assert.InRange(MaxOverlap(records.Select(x => (x.Start, x.End))), 1, 3);
        Assert.Contains("60 succeeded, 0 failed", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_GpuTasks_GetDistinctIdsAndNeverShareAGpu()
    {
        Directory.CreateDirectory(_dir.File("rec"));
        var text = new StringBuilder();
        for (var i = 0; i < 24; i++)
        {
            text.Append(i % 3 == 0 ? "#SHOAL gpus=2\n" : "#SHOAL gpus=1\n").Append(Recorded("sleep 0.05")).Append('\n');
        }

        _dir.Write("tasks.txt", text.ToString());
        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "8", "--gpus", "0,1,2");

        Assert.Equal(0, r.ExitCode);
        var records = Records();
        Assert.Equal(24, records.Count);
        foreach (var rec in records)
        {
            var line = (rec.Id - 1) / 2; // directive lines come first
            Assert.Equal(line % 3 == 0 ? 2 : 1, rec.Gpus.Split(',').Length);
        }

        foreach (var gpu in new[] { "0", "1", "2" })
        {
            var users = records.Where(x => x.Gpus.Split(',').Contains(gpu)).Select(x => (x.Start, x.End));
            Assert.True(MaxOverlap(users) <= 1, $"GPU {gpu} was shared");
        }
    }

    [Fact]
    public async Task Cat_ReturnsEachTasksOutputByteForByte()
    {
        _dir.Write("tasks.txt", "printf 'a\\tb\\n\\001\\377'\nprintf out; printf err >&2; exit 4\nseq 1 20000\n");
        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "2");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("first: 2 (exit 4)", r.Stderr, StringComparison.Ordinal);

        var one = await CatBytes("1");
        Assert.Equal(new byte[] { (byte)'a', 9, (byte)'b', 10, 1, 0xff }, one);
        Assert.Equal("out"u8.ToArray(), await CatBytes("2"));
        Assert.Equal("err"u8.ToArray(), await CatBytes("2", "--stderr"));
        Assert.Equal(string.Concat(Enumerable.Range(1, 20000).Select(i => $"{i}\n")), Encoding.ASCII.GetString(await CatBytes("3")));
    }

    private async Task<byte[]> CatBytes(params string[] args)
    {
        using var p = ShoalBinary.Start(_dir.Path, ["cat", .. args]);
        using var buffer = new MemoryStream();
        await p.StandardOutput.BaseStream.CopyToAsync(buffer);
        await p.WaitForExitAsync();
        Assert.Equal(0, p.ExitCode);
        return buffer.ToArray();
    }

    [Fact]
    public async Task Timeout_KillsTaskAndItsChildren_RecordsTimedOut()
    {
        _dir.Write("tasks.txt", "#SHOAL timeout=1s\nsleep 300 & echo $! > child.pid; wait\necho fine\n");
        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--grace", "1s");

        Assert.Equal(1, r.ExitCode);
        Assert.Contains("2 (timed out)", r.Stderr, StringComparison.Ordinal);
        var child = int.Parse(File.ReadAllText(_dir.File("child.pid")).Trim(), CultureInfo.InvariantCulture);
        await Eventually.True(() => !Processes.Alive(child), "the task's child was killed");
        using var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true);
        Assert.Equal(AttemptState.TimedOut, Assert.Single(journal.Attempts(2)).State);
        Assert.Equal(AttemptState.Succeeded, Assert.Single(journal.Attempts(3)).State);
    }

    [Fact]
    public async Task Retries_RerunAFailingTask_AndEveryAttemptIsListed()
    {
        _dir.Write("tasks.txt", "n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; [ $n -ge 2 ]\n");
        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--retries", "3");

        Assert.Equal(0, r.ExitCode);
        using var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true);
        Assert.Equal([AttemptState.Failed, AttemptState.Failed, AttemptState.Succeeded], journal.Attempts(1).Select(a => a.State));
    }

    [Fact]
    public async Task KillNine_ThenResume_CompletesEveryTask_NoneRecordedFinishedRunsAgain()
    {
        _dir.Write("tasks.txt", string.Concat(Enumerable.Range(0, 150).Select(_ => "sleep 0.03; echo $SHOAL_TASK_ID >> done.log\n")));
        using (var p = ShoalBinary.Start(_dir.Path, ["run", "tasks.txt", "--slots", "4", "-q"]))
        {
            await Eventually.True(() => File.Exists(_dir.File("done.log")) && File.ReadAllLines(_dir.File("done.log")).Length >= 40, "a third done");
            p.Kill();
            await p.WaitForExitAsync();
            Assert.Equal(137, p.ExitCode);
        }

        var recordedDone = new HashSet<int>();
        using (var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true))
        {
            recordedDone.UnionWith(journal.LatestAttempts([AttemptState.Succeeded]).Select(a => a.TaskId));
        }

        Assert.NotEmpty(recordedDone);
        await Task.Delay(200); // tasks the killed run left behind finish (they are not its to record)
        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "4");

        Assert.Equal(0, r.ExitCode);
        var runs = File.ReadAllLines(_dir.File("done.log")).Select(int.Parse).GroupBy(x => x).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(Enumerable.Range(1, 150), runs.Keys.Order());
        Assert.All(recordedDone, id => Assert.Equal(1, runs[id]));
        Assert.Contains($"{recordedDone.Count} succeeded and 0 failed in earlier runs", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SigTerm_InterruptsRunningTasks_Exits143_ResumeRerunsThem()
    {
        _dir.Write("tasks.txt", "echo quick\n" + string.Concat(Enumerable.Range(0, 4).Select(_ => "[ -f go ] || sleep 60; echo $SHOAL_TASK_ID >> done.log\n")));
        using var p = ShoalBinary.Start(_dir.Path, ["run", "tasks.txt", "--slots", "4", "--grace", "1s"]);
        var stderr = p.StandardError.ReadToEndAsync();
        await Eventually.True(() => Directory.Exists(_dir.File("tasks.txt.shoal/out/s1")) && Directory.GetFiles(_dir.File("tasks.txt.shoal/out/s1")).Length >= 8, "tasks running");
        await Task.Delay(300);
        var stopAt = DateTime.UtcNow;
        Assert.Equal(0, Shoal.Execution.Native.Kill(p.Id, Shoal.Execution.Native.SIGTERM));
        await p.WaitForExitAsync();
        Assert.True(DateTime.UtcNow - stopAt < TimeSpan.FromSeconds(30), "shoal did not stop");
        Assert.Equal(143, p.ExitCode);
        Assert.Contains("stopped by signal 15", await stderr, StringComparison.Ordinal);

        using (var journal = RunJournal.Open(_dir.File("tasks.txt.shoal/journal.db"), create: false, readOnly: true))
        {
            Assert.Equal(4, journal.LatestAttempts([AttemptState.Interrupted]).Count);
            Assert.Single(journal.LatestAttempts([AttemptState.Succeeded]));
        }

        File.WriteAllText(_dir.File("go"), "");
        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "--slots", "4");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal([2, 3, 4, 5], File.ReadAllLines(_dir.File("done.log")).Select(int.Parse).Order());
    }

    [Fact]
    public async Task RangeAndEachLine_ReplaceThePlaceholder()
    {
        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "--range", "3-5", "-r", "sweep", "--", "echo", "v={}");
        Assert.Equal(0, r.ExitCode);
        _dir.Write("args.txt", "it's\nplain\n");
        var e = await ShoalBinary.RunAsync(_dir.Path, "run", "--each-line", "args.txt", "--", "printf '%s|' {}");
        Assert.Equal(0, e.ExitCode);

        Assert.Equal("v=5\n", (await ShoalBinary.RunAsync(_dir.Path, "cat", "3", "-r", "sweep")).Stdout);
        Assert.Equal("it's|", (await ShoalBinary.RunAsync(_dir.Path, "cat", "1", "-r", "args.txt.shoal")).Stdout);
    }

    [Fact]
    public async Task Stdin_IsATaskFile()
    {
        var r = await ShoalBinary.RunAsync(_dir.Path, ["run", "-", "-r", "piped"], null, "echo one\n# skip\necho three\n");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("three\n", (await ShoalBinary.RunAsync(_dir.Path, "cat", "3", "-r", "piped")).Stdout);
    }

    [Fact]
    public async Task OutputJson_IsAParsableSummary()
    {
        _dir.Write("tasks.txt", "true\nfalse\n");
        var r = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt", "-o", "json");
        Assert.Equal(1, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal(2, doc.RootElement.GetProperty("total").GetInt32());
        Assert.Equal(1, doc.RootElement.GetProperty("failed").GetInt32());
        Assert.Equal(2, doc.RootElement.GetProperty("first_failures")[0].GetProperty("id").GetInt32());
    }

    [Fact]
    public async Task ChangedTaskFile_IsRefused_AppendedTasksAreAccepted()
    {
        _dir.Write("tasks.txt", "echo a\necho b\n");
        Assert.Equal(0, (await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt")).ExitCode);

        _dir.Write("tasks.txt", "echo a\necho b\necho c\n");
        var appended = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt");
        Assert.Equal(0, appended.ExitCode);
        Assert.Contains("3 tasks: 1 succeeded", appended.Stderr, StringComparison.Ordinal);

        _dir.Write("tasks.txt", "echo A\necho b\necho c\n");
        var changed = await ShoalBinary.RunAsync(_dir.Path, "run", "tasks.txt");
        Assert.Equal(2, changed.ExitCode);
        Assert.Contains("changed since the run", changed.Stderr, StringComparison.Ordinal);
    }

    public void Dispose() => _dir.Dispose();
}
