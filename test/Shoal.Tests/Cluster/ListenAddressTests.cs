using System.Net;
using System.Net.Sockets;
using Shoal.Cluster;
using Shoal.Journal;
using Shoal.Tests.Support;

namespace Shoal.Tests.Cluster;

/// <summary>SHOAL_LEADER_ADDRESS decides where the leader listens, not only what the workers are told.
/// (127.0.0.2 is another address of this host's loopback interface: reachable only by a listener on every address.)</summary>
public sealed class ListenAddressTests : IDisposable
{
    private readonly TempDir _dir = new();

    private string Tasks(int n) => InProcessLeader.EchoTasks(_dir, n);

    [Fact]
    public async Task LeaderAddress_AnAddress_ListensThereOnly()
    {
        await using var cluster = InProcessLeader.Start(_dir, Tasks(1), leaderAddress: "127.0.0.1");

        Assert.Equal([new IPEndPoint(IPAddress.Loopback, cluster.Port)], cluster.Leader.LocalEndpoints);
        Assert.True(await ConnectsAsync("127.0.0.1", cluster.Port));
        Assert.False(await ConnectsAsync("127.0.0.2", cluster.Port));
    }

    [Fact]
    public async Task LeaderAddress_AName_ListensOnItsAddresses_AWorkerGivenTheNameJoins()
    {
        await using var cluster = InProcessLeader.Start(_dir, Tasks(4), leaderAddress: "localhost");

        var expected = Dns.GetHostAddresses("localhost").Distinct().Select(a => new IPEndPoint(a, cluster.Port).ToString());
        Assert.Equal(expected.Order(), cluster.Leader.LocalEndpoints.Select(e => e.ToString()).Order());
        Assert.False(await ConnectsAsync("127.0.0.2", cluster.Port));
        var run = cluster.Loop.RunAsync();
        var worker = Task.Run(() => WorkerAgent.RunAsync("localhost", cluster.Port, cluster.Secret, "w", 2, [], _ => { }, CancellationToken.None));
        await Eventually.True(() => cluster.Loop.Progress.Succeeded > 0, "the worker joined");
        cluster.Loop.ExpectNoMoreWorkers();
        Assert.Equal(4, (await run.WaitAsync(TimeSpan.FromMinutes(1))).Succeeded);
        Assert.Equal(0, await worker.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task LeaderAddress_Unset_ListensOnEveryIPv4Address()
    {
        await using var cluster = InProcessLeader.Start(_dir, Tasks(1));

        Assert.Equal([new IPEndPoint(IPAddress.Any, cluster.Port)], cluster.Leader.LocalEndpoints);
        Assert.True(await ConnectsAsync("127.0.0.2", cluster.Port));
    }

    [Fact]
    public void LeaderAddress_ThatDoesNotResolve_IsAClearError()
    {
        var e = Assert.Throws<JournalException>(() => SlurmLeader.ListenAddresses("no-such-host.invalid"));
        Assert.Contains("SHOAL_LEADER_ADDRESS=no-such-host.invalid does not resolve", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task LeaderAddress_NotOfThisHost_IsAClearError()
    {
        var e = await Assert.ThrowsAsync<JournalException>(async () =>
        {
            await using var cluster = InProcessLeader.Start(_dir, Tasks(1), leaderAddress: "192.0.2.1");
        });
        Assert.Contains("cannot listen on 192.0.2.1", e.Message, StringComparison.Ordinal);
    }

    private static async Task<bool> ConnectsAsync(string address, int port)
    {
        using var client = new TcpClient();
        try
        {
            await client.ConnectAsync(IPAddress.Parse(address), port).WaitAsync(TimeSpan.FromSeconds(10));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public void Dispose() => _dir.Dispose();
}
