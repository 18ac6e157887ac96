// Transaction smoke check for `kafka.sh smoke`, run as a single-file program
// (java -cp '<libs>/*' TxnSmoke.java BOOTSTRAP TOPIC) against the Kafka client jars.
//
// One transactional producer writes three transactions to partition 0 of TOPIC:
// commit 5 records, abort 5 records, commit 5 records. Then a read_committed consumer
// must see exactly the 10 committed records in order and none of the aborted ones,
// and a read_uncommitted consumer must see all 15. Exits 0 and prints one line when so.
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class TxnSmoke {
    static final int N = 5;
    static final long TIMEOUT_MS = 30_000;

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: TxnSmoke BOOTSTRAP TOPIC");
            System.exit(2);
        }
        String bootstrap = args[0], topic = args[1];

        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("transactional.id", "weir-smoke-" + UUID.randomUUID());
        p.put("acks", "all");
        p.put("enable.idempotence", "true");
        p.put("max.block.ms", String.valueOf(TIMEOUT_MS));
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        List<String> committed = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            producer.initTransactions();
            for (String phase : new String[] {"commit-a", "abort", "commit-b"}) {
                producer.beginTransaction();
                for (int i = 0; i < N; i++) {
                    String v = phase + "-" + i;
                    producer.send(new ProducerRecord<>(topic, 0, "k" + i, v));
                    if (!phase.equals("abort")) committed.add(v);
                }
                if (phase.equals("abort")) {
                    producer.flush(); // the records reach the log, then get aborted
                    producer.abortTransaction();
                } else {
                    producer.commitTransaction();
                }
            }
        }

        List<String> rc = readAll(bootstrap, topic, "read_committed");
        if (!rc.equals(committed)) {
            fail("read_committed saw " + rc + ", expected " + committed);
        }
        List<String> ru = readAll(bootstrap, topic, "read_uncommitted");
        if (ru.size() != 3 * N) {
            fail("read_uncommitted saw " + ru.size() + " records, expected " + (3 * N));
        }
        System.out.println("transactions ok: read_committed saw " + rc.size()
                + " committed records and hid " + (ru.size() - rc.size()) + " aborted ones");
    }

    // Reads partition 0 from the beginning up to its end offset (the last stable offset
    // under read_committed).
    static List<String> readAll(String bootstrap, String topic, String isolation) {
        Properties c = new Properties();
        c.put("bootstrap.servers", bootstrap);
        c.put("isolation.level", isolation);
        c.put("enable.auto.commit", "false");
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        List<String> out = new ArrayList<>();
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            consumer.assign(Collections.singletonList(tp));
            consumer.seekToBeginning(Collections.singletonList(tp));
            long end = consumer.endOffsets(Collections.singletonList(tp), Duration.ofMillis(TIMEOUT_MS)).get(tp);
            long deadline = System.currentTimeMillis() + TIMEOUT_MS;
            while (consumer.position(tp, Duration.ofMillis(TIMEOUT_MS)) < end) {
                if (System.currentTimeMillis() > deadline) {
                    fail(isolation + " consumer did not reach offset " + end + " in " + TIMEOUT_MS + " ms");
                }
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    out.add(r.value());
                }
            }
        }
        return out;
    }

    static void fail(String msg) {
        System.err.println("transaction smoke check failed: " + msg);
        System.exit(1);
    }
}
