using System.Text;
using Shoal.Tasks;

namespace Shoal.Tests.Tasks;

public class TaskSourcesTests
{
    private static TaskList Parse(string text) => TaskSources.FromTaskFile(Encoding.UTF8.GetBytes(text), "tasks.txt");

    [Fact]
    public void FromTaskFile_SkipsBlankAndCommentLines_IdsAreLineNumbers()
    {
        var tasks = Parse("echo a\n\n# comment\n   \necho b\r\n  echo c");

        Assert.Equal(3, tasks.Count);
        Assert.Equal([1, 5, 6], Enumerable.Range(0, 3).Select(tasks.Id));
        Assert.Equal("echo b", tasks.Command(1));
        Assert.Equal("  echo c", tasks.Command(2));
    }

    [Fact]
    public void FromTaskFile_Directive_AppliesToNextCommandOnly()
    {
        var tasks = Parse("#SHOAL cpus=4 gpus=1 timeout=10m\npython train.py\necho small\n");

        Assert.Equal(new TaskShape(4, 1, TimeSpan.FromMinutes(10)), tasks.Shape(0));
        Assert.Equal(TaskShape.Default, tasks.Shape(1));
        Assert.Equal(2, tasks.Id(0));
    }

    [Theory]
    [InlineData("#SHOAL cpu=4\necho", "tasks.txt:1: unknown #SHOAL setting 'cpu'")]
    [InlineData("echo\n#SHOAL cpus=0\necho", "tasks.txt:2: cpus=0 is not a whole number of at least 1")]
    [InlineData("#SHOAL cpus=two\necho", "tasks.txt:1: cpus=two")]
    [InlineData("#SHOAL timeout=soon\necho", "tasks.txt:1: timeout 'soon' is not a positive duration")]
    [InlineData("#SHOAL cpus=2", "tasks.txt:1: #SHOAL directive is not followed by a command")]
    [InlineData("#SHOAL cpus=2\n#SHOAL gpus=1\necho", "tasks.txt:1: #SHOAL directive is followed by another directive on line 2")]
    [InlineData("#SHOAL\necho", "tasks.txt:1: #SHOAL without settings")]
    [InlineData("#SHOAL cpus\necho", "tasks.txt:1: 'cpus' is not KEY=VALUE")]
    [InlineData("echo ok\necho a\0b", "tasks.txt:2: the line contains a NUL byte")]
    [InlineData("echo a\n#SHOAL barrier foo\necho b", "tasks.txt:2: unknown barrier option 'foo' (known: stop-on-failure)")]
    [InlineData("echo a\n#SHOAL barrier stop-on-failure=yes\necho b", "tasks.txt:2: unknown barrier option 'stop-on-failure=yes'")]
    [InlineData("#SHOAL node-setup\necho", "tasks.txt:1: #SHOAL node-setup needs a command")]
    [InlineData("#SHOAL node-teardown   \necho", "tasks.txt:1: #SHOAL node-teardown needs a command")]
    [InlineData("echo a\n#SHOAL node-setup ./stage.sh\necho b", "tasks.txt:2: #SHOAL node-setup must come before the first task")]
    [InlineData("#SHOAL node-setup a\n#SHOAL node-setup b\necho", "tasks.txt:2: a second #SHOAL node-setup (the first is on line 1)")]
    [InlineData("#SHOAL cpus=2\n#SHOAL barrier\necho", "tasks.txt:1: #SHOAL directive is followed by '#SHOAL barrier' on line 2")]
    public void FromTaskFile_BadLine_NamesFileLineAndProblem(string text, string expected)
    {
        var e = Assert.Throws<TaskInputException>(() => Parse(text));
        Assert.StartsWith(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FromTaskFile_InvalidUtf8_IsAnError()
    {
        var bytes = "echo ok\necho "u8.ToArray().Concat(new byte[] { 0xff, 0xfe, (byte)'\n' }).ToArray();
        var e = Assert.Throws<TaskInputException>(() => TaskSources.FromTaskFile(bytes, "t"));
        Assert.Equal("t:2: the line is not valid UTF-8", e.Message);
    }

    [Fact]
    public void FromTaskFile_CommentThatStartsWithShoalWord_IsAComment()
    {
        var tasks = Parse("#SHOALS are fish\necho");
        Assert.Equal(1, tasks.Count);
        Assert.Equal(TaskShape.Default, tasks.Shape(0));
    }

    [Fact]
    public void FromRange_ReplacesPlaceholder_IdsFromOne()
    {
        var tasks = TaskSources.FromRange("5-7", "./sim --seed {} > out.{}");
        Assert.Equal(3, tasks.Count);
        Assert.Equal("./sim --seed 5 > out.5", tasks.Command(0));
        Assert.Equal(3, tasks.Id(2));
        Assert.Equal("./sim --seed 7 > out.7", tasks.Command(2));
    }

    [Theory]
    [InlineData("10-1")]
    [InlineData("abc")]
    [InlineData("1-")]
    public void FromRange_BadRange_IsAnError(string range) =>
        Assert.Throws<TaskInputException>(() => TaskSources.FromRange(range, "echo {}"));

    [Fact]
    public void FromEachLine_QuotesTheArgumentForTheShell()
    {
        var tasks = TaskSources.FromEachLine(Encoding.UTF8.GetBytes("plain.txt\nit's a file\n\n$(rm -rf x)\n"), "args.txt", "convert {}");
        Assert.Equal(3, tasks.Count);
        Assert.Equal("convert plain.txt", tasks.Command(0));
        Assert.Equal("convert 'it'\\''s a file'", tasks.Command(1));
        Assert.Equal("convert '$(rm -rf x)'", tasks.Command(2));
    }

    [Fact]
    public void Template_WithoutPlaceholder_IsAnError() =>
        Assert.Throws<TaskInputException>(() => TaskSources.FromRange("1-3", "echo"));

    /// <summary>Seeded random inputs, biased towards the bytes the parser cares about: either tasks or a
    /// <see cref="TaskInputException"/> naming the origin and a line, never another exception.</summary>
    [Fact]
    public void FromTaskFile_RandomBytes_OnlyClearErrors()
    {
        var random = new Random(1234);
        byte[] alphabet = [.. "#SHOAL cpus=gpus=timeout=1s\r\n\t {}"u8, 0, 0xff, 0xc3, 0x28, (byte)'a', (byte)'9'];
        var parsed = 0;
        for (var i = 0; i < 5000; i++)
        {
            var bytes = new byte[random.Next(0, 200)];
            for (var k = 0; k < bytes.Length; k++)
            {
                bytes[k] = random.Next(4) == 0 ? (byte)random.Next(256) : alphabet[random.Next(alphabet.Length)];
            }

            try
            {
                var tasks = TaskSources.FromTaskFile(bytes, "fuzz");
                parsed++;
                for (var t = 0; t < tasks.Count; t++)
                {
                    Assert.DoesNotContain((byte)0, tasks.CommandBytes(t));
                    Assert.InRange(tasks.Id(t), 1, bytes.Length + 1);
                }
            }
            catch (TaskInputException e)
            {
                Assert.Matches(@"^fuzz:\d+: ", e.Message);
            }
        }

        Assert.InRange(parsed, 1, 4999); // both outcomes were exercised
    }

    [Fact]
    public void Fingerprint_AppendedTasks_KeepPrefixFingerprint()
    {
        var before = Parse("echo a\necho b\n");
        var appended = Parse("echo a\necho b\necho c\n");
        var edited = Parse("echo a\necho B\necho c\n");
        var resized = Parse("echo a\n#SHOAL cpus=2\necho b\n");

        Assert.Equal(before.Fingerprint(2), appended.Fingerprint(2));
        Assert.NotEqual(before.Fingerprint(2), edited.Fingerprint(2));
        Assert.NotEqual(before.Fingerprint(2), appended.Fingerprint(3));
        Assert.NotEqual(before.Fingerprint(2), resized.Fingerprint(2));
    }

    [Fact]
    public void FromTaskFile_Barriers_SplitTheTasks_IdsStayLineNumbers()
    {
        var tasks = Parse("#SHOAL barrier\necho a\necho b\n#SHOAL barrier\n#SHOAL cpus=2\necho c\n#SHOAL   barrier\tstop-on-failure\necho d\n#SHOAL barrier\n");

        Assert.Equal([2, 3, 6, 8], Enumerable.Range(0, tasks.Count).Select(tasks.Id));
        Assert.Equal(
            [new TaskBarrier(1, 0, false), new TaskBarrier(4, 2, false), new TaskBarrier(7, 3, true), new TaskBarrier(9, 4, false)],
            tasks.Barriers);
        Assert.Equal(2, tasks.Shape(2).Cpus);
    }

    [Fact]
    public void FromTaskFile_NodeSteps_TheRestOfTheLine_BeforeTheFirstTask()
    {
        var tasks = Parse("# stage the data\n#SHOAL node-setup  cp -r /data \"$TMPDIR/x y\" && echo ok  \n#SHOAL node-teardown rm -rf $TMPDIR/x\necho a\n");

        Assert.Equal(new NodeStepCommand("cp -r /data \"$TMPDIR/x y\" && echo ok", 2), tasks.NodeSetup);
        Assert.Equal(new NodeStepCommand("rm -rf $TMPDIR/x", 3), tasks.NodeTeardown);
        Assert.Equal(1, tasks.Count);
        Assert.Equal(4, tasks.Id(0));
        Assert.Null(Parse("echo a\n").NodeSetup);
    }
}
