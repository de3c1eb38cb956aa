using Shoal.Execution;
using Shoal.Protocol;

namespace Shoal.Tests.Protocol;

public class FrameTests
{
    [Fact]
    public async Task Frame_GoldenBytes()
    {
        using var stream = new MemoryStream();
        await Frame.WriteAsync(stream, MessageType.Signal, SignalMessage.Encode(3, 15), CancellationToken.None);
        Assert.Equal(new byte[] { 0, 0, 0, 9, 11, 3, 0, 0, 0, 15, 0, 0, 0 }, stream.ToArray());
    }

    [Fact]
    public async Task StartAndExits_RoundTrip()
    {
        LaunchRequest[] requests = [new(4, 5, 2, "echo 'hi'"u8.ToArray(), 1, 2, ["0", "3"]), new(9, 10, 1, [], 0, 1, null)];
        var decoded = StartMessage.Decode(StartMessage.Encode(requests).ToArray());
        Assert.Equal(2, decoded.Count);
        Assert.Equal(requests[0] with { Command = decoded[0].Command, Gpus = decoded[0].Gpus }, decoded[0]);
        Assert.Equal(requests[0].Command, decoded[0].Command);
        Assert.Equal(["0", "3"], decoded[0].Gpus!);
        Assert.Null(decoded[1].Gpus);

        TaskExit[] exits = [new(4, 2, 0, 0, 123, 45, 1, 10, 20, 30, 40), new(9, 1, -1, 9, 1, 2, 0, 0, 0, 0, 0, SpawnFailed: true)];
        Assert.Equal(exits.Select(e => e with { Worker = 7 }), ExitsMessage.Decode(ExitsMessage.Encode(exits).ToArray(), 7));
    }

    [Fact]
    public void StartEncodedSize_AddsUpToTheEncodedPayload()
    {
        LaunchRequest[] requests = [new(4, 5, 2, new byte[1000], 1, 2, ["0", "13"]), new(9, 10, 1, [], 0, 1, null), new(1, 2, 3, "é"u8.ToArray(), 0, 1, ["é"])];
        Assert.Equal(StartMessage.Encode(requests).Length, 4 + requests.Sum(StartMessage.EncodedSize));
    }

    [Theory]
    [InlineData(new byte[] { 0, 0, 0, 0 })]
    [InlineData(new byte[] { 0x7f, 0xff, 0xff, 0xff })]
    [InlineData(new byte[] { 0xff, 0xff, 0xff, 0xff })]
    [InlineData(new byte[] { 0, 0, 0, 9, 11, 3 })]
    [InlineData(new byte[] { 0, 0 })]
    public async Task Read_BadFrames_AreProtocolErrors(byte[] bytes)
    {
        using var stream = new MemoryStream(bytes);
        await Assert.ThrowsAsync<ProtocolException>(() => Frame.ReadAsync(stream, CancellationToken.None));
    }

    [Fact]
    public void Decode_TruncatedOrPaddedMessages_AreProtocolErrors()
    {
        var good = StartMessage.Encode([new(1, 2, 1, "x"u8.ToArray(), 0, 1, null)]).ToArray();
        Assert.Throws<ProtocolException>(() => StartMessage.Decode(good[..^1]));
        Assert.Throws<ProtocolException>(() => StartMessage.Decode([.. good, 0]));
        Assert.Throws<ProtocolException>(() => Handshake.DecodeHello("NOTSHOAL"u8.ToArray()));
        var random = new Random(3);
        for (var i = 0; i < 2000; i++)
        {
            var junk = new byte[random.Next(0, 64)];
            random.NextBytes(junk);
            Action[] decoders = [() => StartMessage.Decode(junk), () => ExitsMessage.Decode(junk, 0), () => NodeStepMessage.Decode(junk), () => WelcomeMessage.Decode(junk)];
            foreach (var decode in decoders)
            {
                try
                {
                    decode();
                }
                catch (ProtocolException)
                {
                }
            }
        }
    }

    [Fact]
    public void Welcome_WithTheLongestNodeStepCommands_RoundTrips_AndFitsTheWorkersLimit()
    {
        var longest = new string('x', Shoal.Tasks.TaskSources.MaxCommandBytes - 1);
        var welcome = new WelcomeMessage(7, "/runs/a.shoal/out/s3", "w7-node7-", "/bin/bash", "/runs/a.shoal")
        {
            Session = 3,
            Setup = longest,
            Teardown = longest,
            SetupTimeoutMs = 600_000,
            TeardownTimeoutMs = 120_000,
            GraceMs = 3000,
            ManageGpus = true,
        };
        var bytes = welcome.Encode().ToArray();
        Assert.True(bytes.Length <= Shoal.Cluster.WorkerAgent.MaxWelcomeFrame, $"{bytes.Length} bytes");
        Assert.Equal(welcome, WelcomeMessage.Decode(bytes));
        Assert.Equal(new NodeStepPlan("/bin/bash", longest, longest, TimeSpan.FromMinutes(10), TimeSpan.FromMinutes(2), TimeSpan.FromSeconds(3)), welcome.Steps);
    }

    [Fact]
    public void NodeStep_RoundTrips_AndABogusStepIsAProtocolError()
    {
        var step = new NodeStepResult(NodeStep.Teardown, 1_795_000_000_000, 1234, -9, true, "/runs/a.shoal/out/s1/w1-n1-teardown.log", "last words", NodeStepResult.Stopped);
        Assert.Equal(step, NodeStepMessage.Decode(NodeStepMessage.Encode(step).ToArray()));
        var bytes = NodeStepMessage.Encode(step).ToArray();
        bytes[0] = 2;
        Assert.Throws<ProtocolException>(() => NodeStepMessage.Decode(bytes));
    }

    [Fact]
    public void Hello_OtherVersion_IsRefusedWithAClearMessage()
    {
        var hello = Handshake.EncodeHello(Handshake.NewNonce()).ToArray();
        hello[5] = 99; // version field follows the 5-byte magic
        var e = Assert.Throws<ProtocolException>(() => Handshake.DecodeHello(hello));
        Assert.Contains("protocol version 99", e.Message, StringComparison.Ordinal);
    }
}
