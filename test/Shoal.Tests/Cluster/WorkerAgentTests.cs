using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Shoal.Cluster;
using Shoal.Execution;
using Shoal.Protocol;
using Shoal.Tests.Support;

namespace Shoal.Tests.Cluster;

/// <summary>The worker against a scripted leader.</summary>
public sealed class WorkerAgentTests : IDisposable
{
    private readonly TempDir _dir = new();

    [Fact]
    public async Task LeaderGoneRightAfterABurstOfStarts_WorkerStartsNoMore_AndLeavesNoTaskRunning()
    {
        const int burst = 256;
        var marker = "9" + Random.Shared.Next(100_000, 999_999).ToString(CultureInfo.InvariantCulture); // sleep 9NNNNNN: unique on this machine
        var secret = Handshake.NewSecret();
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;

        var worker = Task.Run(() => WorkerAgent.RunAsync("127.0.0.1", port, secret, "w", burst, [], _ => { }, CancellationToken.None));
        using (var leader = await listener.AcceptTcpClientAsync())
        {
            var s = leader.GetStream();
            var clientNonce = Handshake.DecodeHello((await Frame.ReadAsync(s, CancellationToken.None))!.Value.Payload);
            var serverNonce = Handshake.NewNonce();
            await Frame.WriteAsync(s, MessageType.Challenge, Handshake.EncodeChallenge(serverNonce, Handshake.Proof(secret, "leader", clientNonce, serverNonce)), CancellationToken.None);
            _ = await Frame.ReadAsync(s, CancellationToken.None); // Auth
            _ = await Frame.ReadAsync(s, CancellationToken.None); // Register
            await Frame.WriteAsync(s, MessageType.Welcome, new WelcomeMessage(1, _dir.File("out"), "w1-", "/bin/sh", _dir.Path).Encode(), CancellationToken.None);
            var starts = Enumerable.Range(0, burst).Select(i => new LaunchRequest(i, i + 1, 1, System.Text.Encoding.UTF8.GetBytes($"echo $$ >> {_dir.File("pids")}; sleep {marker}"), i, 1, null)).ToList();
            await Frame.WriteAsync(s, MessageType.Start, StartMessage.Encode(starts), CancellationToken.None);
        } // and the leader is gone

        Assert.Equal(WorkerAgent.LeaderLost, await worker.WaitAsync(TimeSpan.FromSeconds(30)));

        await Eventually.True(() => TaskProcesses(marker).Count == 0, "no task process left", 5_000);
        var started = File.Exists(_dir.File("pids")) ? File.ReadAllLines(_dir.File("pids")).Length : 0;
        Assert.True(started < burst, $"all {burst} tasks started after the leader was gone");
        // And nothing starts later from a queue that outlived the worker.
        await Task.Delay(500);
        Assert.Empty(TaskProcesses(marker));
        Assert.Equal(started, File.Exists(_dir.File("pids")) ? File.ReadAllLines(_dir.File("pids")).Length : 0);
    }

    private static List<int> TaskProcesses(string marker)
    {
        var pids = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            try
            {
                if (File.ReadAllText(Path.Combine(dir, "cmdline")).Contains($"sleep {marker}", StringComparison.Ordinal) && Processes.Alive(pid))
                {
                    pids.Add(pid);
                }
            }
            catch (IOException)
            {
            }
        }

        return pids;
    }

    public void Dispose() => _dir.Dispose();
}
